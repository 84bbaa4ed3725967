#!/bin/busybox sh
# Guest /init for the multipath e2e test (PID 1 in a QEMU VM): one AoE address, e9.0,
# served by two targets (two MACs on the guest's only link) over one shared backing file.
# It checks that the aoe driver merges both paths into one disk and spreads I/O over
# them, then writes while the host SIGKILLs target A, and checks that the write completes
# through B with no I/O error and that the data reads back right; then A is started again
# and must be used again, serving what B wrote meanwhile.
#
# Same serial protocol as init.sh: KVE:RESULT <name> PASS|FAIL <detail>, KVE:INFO k=v,
# KVE:REQ <action> (answered by a line go-<action> on the console), KVE:DONE.
# Parameters come from /e2e/params, the data sets from /e2e/d1.bin, d2.bin and d3.bin.

/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
. /e2e/params

say() { echo "KVE:$*"; }
result() { say "RESULT $1 $2 ${3:-}"; }
pass() { result "$1" PASS "${2:-}"; }
fail() { result "$1" FAIL "${2:-}"; }
check_eq() { # name got want
  if [ "$2" = "$3" ]; then pass "$1" "$2"; else fail "$1" "got=$2 want=$3"; fi
}
# The driver's own view, for the report: its debugfs file and what it wrote to /dev/etherd/err.
show_driver() {
  [ -r "$DBG" ] && sed 's/^/KVE:DEBUGFS /' "$DBG"
  [ -s /tmp/aoe.err ] && { head -n 8 /tmp/aoe.err; echo "... $(wc -l < /tmp/aoe.err) lines"; } | sed 's/^/KVE:AOEERR /'
}
finish() {
  show_driver
  say "DMESG-BEGIN"
  dmesg | grep -iE 'aoe|etherd|error' | tail -n 40
  say "DMESG-END"
  say "DONE"
  sync
  poweroff -f
  sleep 5
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
md5() { md5sum | cut -d' ' -f1; }
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
request() { # ACTION [max seconds]: ask the host, wait for go-ACTION
  say "REQ $1"
  local line deadline=$(( $(date +%s) + ${2:-120} ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if read -t 5 line < /dev/console; then
      case "$line" in *"go-$1"*) return 0 ;; esac
    fi
  done
  return 1
}
wait_for() { # max seconds, command...: prints the seconds waited
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
ip link set eth0 up
wait_for 20 grep -q 1 /sys/class/net/eth0/carrier >/dev/null
insmod /lib/modules/aoe.ko aoe_iflist=eth0 aoe_deadsecs="$KVE_DEADSECS" || { fail boot "insmod aoe"; finish; }

E=/dev/etherd/e9.0
S='/sys/block/etherd!e9.0'
DBG=/sys/kernel/debug/aoe/e9.0
MIB=1048576
A=$KVE_MAC_A
B=$KVE_MAC_B

# Every driver message (retransmits name the target they went to: d=<mac>), from the start:
# the driver keeps only a small backlog for a late reader.
wait_for 10 test -c /dev/etherd/err >/dev/null && cat /dev/etherd/err > /tmp/aoe.err 2>/dev/null &

# The targets the driver holds for e9.0 (debugfs: one "<mac>:<nout>:<maxout>:<nframes>" line
# each, then tab-indented counters), and one counter of one target.
targets() { awk 'substr($0, 13, 1) == ":" && substr($0, 1, 12) ~ /^[0-9a-f]+$/ { print substr($0, 1, 12) }' "$DBG" | sort | tr '\n' ' '; }
tstat() { # MAC FIELD (taint, r, w)
  awk -v m="$1" -v f="$2:" 'substr($0, 13, 1) == ":" { cur = substr($0, 1, 12) }
    cur == m && index($1, f) == 1 { print substr($1, length(f) + 1); exit }' "$DBG"
}
writes() { echo $(( $(tstat $A w) + $(tstat $B w) )); }
has_target() { case " $(targets)" in *" $1 "*) return 0 ;; esac; return 1; }
both_seen() { [ -b $E ] && [ -r "$DBG" ] && has_target $A && has_target $B; }
discover() { echo > /dev/etherd/discover; sleep 1; both_seen; }
n=$(wait_for "$KVE_DISCOVER_SECS" discover)
if both_seen; then
  pass two-targets "one e9.0, targets $(targets)after ${n}s"
else
  fail two-targets "after ${n}s: /dev/etherd: $(ls /dev/etherd 2>&1 | tr '\n' ' ') targets: $( [ -r "$DBG" ] && targets || echo "no $DBG")"
  finish
fi
check_eq one-disk "$(ls /dev/etherd | grep -cE '^e[0-9]+\.[0-9]+$')" 1
check_eq size "$(cat $S/size)" "$KVE_SECTORS"
check_eq state "$(cat $S/state)" up
say "INFO netif=$(cat $S/netif) mac=$(cat $S/mac) payload=$(cat $S/payload) fwver=$(cat $S/firmware-version)"

# What the host put in the backing file before export.
drop_caches
check_eq host-data "$(dd if=$E bs=65536 count=$((KVE_H_LEN / 65536)) iflag=direct 2>/dev/null | md5)" "$KVE_H_MD5"

# 1. Both targets alive: write D1 with O_DIRECT, read it back; both paths carry frames.
D1=$(md5 < /e2e/d1.bin)
wa=$(tstat $A w) wb=$(tstat $B w) t0=$(now)
if dd if=/e2e/d1.bin of=$E bs=$MIB seek=$((KVE_D1_OFF / MIB)) oflag=direct conv=notrunc 2>/tmp/dd1.err; then
  pass write-both "$((KVE_D1_LEN / MIB)) MiB in $(since $t0)s"
else
  fail write-both "dd: $(tr '\n' ' ' < /tmp/dd1.err)"
fi
wa=$(( $(tstat $A w) - wa )) wb=$(( $(tstat $B w) - wb ))
if [ "$wa" -gt 0 ] && [ "$wb" -gt 0 ]; then pass write-spread "write frames: A $wa, B $wb"; else fail write-spread "write frames: A $wa, B $wb"; fi
drop_caches
ra=$(tstat $A r) rb=$(tstat $B r)
check_eq readback-both "$(dd if=$E bs=$MIB skip=$((KVE_D1_OFF / MIB)) count=$((KVE_D1_LEN / MIB)) iflag=direct 2>/dev/null | md5)" "$D1"
ra=$(( $(tstat $A r) - ra )) rb=$(( $(tstat $B r) - rb ))
if [ "$ra" -gt 0 ] && [ "$rb" -gt 0 ]; then pass read-spread "read frames: A $ra, B $rb"; else fail read-spread "read frames: A $ra, B $rb"; fi
check_eq readback-both-cached "$(dd if=$E bs=65536 skip=$((KVE_D1_OFF / 65536)) count=$((KVE_D1_LEN / 65536)) 2>/dev/null | md5)" "$D1"
say "INFO d1-md5=$D1"

# 2. Write D2 (overlapping the end of D1) and have the host SIGKILL A once a part of it is out.
D2=$(md5 < /e2e/d2.bin)
# What D1's range and D2's hold from now on: D1's first part (not overwritten), then D2.
WANT=$( { dd if=/e2e/d1.bin bs=$MIB count=$(( (KVE_D2_OFF - KVE_D1_OFF) / MIB )) 2>/dev/null; cat /e2e/d2.bin; } | md5)
w0=$(writes) t0=$(now)
dd if=/e2e/d2.bin of=$E bs=$MIB seek=$((KVE_D2_OFF / MIB)) oflag=direct conv=notrunc 2>/tmp/dd2.err &
DD=$!
# Wait until KVE_KILL_AFTER write frames of it are out (the driver counts frames as it sends them).
while kill -0 $DD 2>/dev/null && [ $(( $(writes) - w0 )) -lt "$KVE_KILL_AFTER" ]; do sleep 0.05; done
before=$(( $(writes) - w0 ))
if request kill-a 60; then
  tk=$(now)
  if kill -0 $DD 2>/dev/null; then
    pass kill-mid-write "A killed after $before of $((KVE_D2_LEN / $(cat $S/payload))) write frames, $(since $t0)s into the write"
  else
    fail kill-mid-write "dd had already finished when A was killed ($before frames)"
  fi
  wbk=$(tstat $B w)
  wait $DD
  rc=$?
  if [ $rc = 0 ]; then
    pass write-through-failover "dd exit 0, $((KVE_D2_LEN / MIB)) MiB, done $(since $tk)s after the kill"
  else
    fail write-through-failover "dd exit $rc: $(tr '\n' ' ' < /tmp/dd2.err)"
  fi
  check_eq state-after-failover "$(cat $S/state)" up
  wbk=$(( $(tstat $B w) - wbk ))
  if [ "$wbk" -gt 0 ]; then pass b-took-over "$wbk new write frames went to B after the kill"; else fail b-took-over "no write frames went to B after the kill"; fi
  ta=$(tstat $A taint) tb=$(tstat $B taint)
  if [ "$ta" -gt 0 ] && [ "$tb" = 0 ]; then pass a-avoided "taint: A $ta, B $tb"; else fail a-avoided "taint: A $ta, B $tb"; fi
  check_eq targets-kept "$(targets)" "$(printf '%s\n' $A $B | sort | tr '\n' ' ')"
  say "INFO retransmits-to-a=$(grep -c "retransmit.* d=$A" /tmp/aoe.err) retransmits-to-b=$(grep -c "retransmit.* d=$B" /tmp/aoe.err)"
  errs=$(dmesg | grep -ciE 'I/O error|ata error|aoe: .*(down|fail)')
  check_eq no-io-errors "$errs" 0
  drop_caches
  # Read through B alone now.
  rb=$(tstat $B r)
  check_eq readback-after-failover "$(dd if=$E bs=$MIB skip=$((KVE_D1_OFF / MIB)) count=$(( (KVE_D2_OFF + KVE_D2_LEN - KVE_D1_OFF) / MIB )) iflag=direct 2>/dev/null | md5)" "$WANT"
  check_eq readback-d2-cached "$(dd if=$E bs=65536 skip=$((KVE_D2_OFF / 65536)) count=$((KVE_D2_LEN / 65536)) 2>/dev/null | md5)" "$D2"
  rb=$(( $(tstat $B r) - rb ))
  if [ "$rb" -gt 0 ]; then pass reads-via-b "B answered $rb read frames after the kill"; else fail reads-via-b "no reads from B"; fi
  say "INFO d2-md5=$D2"
else
  fail kill-mid-write "host did not answer"
  wait $DD
fi

# 3. A comes back (restarted, as after fencing): the driver probes it again and uses it once
# it answers. It re-probes a target it avoids more slowly the longer that target was silent
# and the slower recent replies were, so reads (fresh replies from B) bring A back; each
# read also checks what the disk holds.
if request restart-a 60; then
  tr=$(now) i=0 bad=0
  RANGE="bs=$MIB skip=$((KVE_D1_OFF / MIB)) count=$(( (KVE_D2_OFF + KVE_D2_LEN - KVE_D1_OFF) / MIB ))"
  while [ "$(tstat $A taint)" != 0 ] && [ $i -lt "$KVE_REJOIN_READS" ]; do
    drop_caches
    [ "$(dd if=$E $RANGE iflag=direct 2>/dev/null | md5)" = "$WANT" ] || bad=$((bad + 1))
    i=$((i + 1))
  done
  if [ "$(tstat $A taint)" = 0 ]; then
    pass a-rejoined "A in use again $(since $tr)s after its restart, after $i reads"
  else
    fail a-rejoined "A still tainted ($(tstat $A taint)) after $i reads, $(since $tr)s"
  fi
  check_eq reads-while-rejoining "$bad bad of $i" "0 bad of $i"
  ra=$(tstat $A r)
  drop_caches
  check_eq readback-after-rejoin "$(dd if=$E $RANGE iflag=direct 2>/dev/null | md5)" "$WANT"
  ra=$(( $(tstat $A r) - ra ))
  if [ "$ra" -gt 0 ]; then pass reads-via-a-again "A answered $ra read frames with what B wrote while it was gone"; else fail reads-via-a-again "no reads from A"; fi
  # Both paths take writes again.
  D3=$(md5 < /e2e/d3.bin)
  wa=$(tstat $A w) wb=$(tstat $B w)
  if dd if=/e2e/d3.bin of=$E bs=$MIB seek=$((KVE_D3_OFF / MIB)) oflag=direct conv=notrunc 2>/tmp/dd3.err; then
    wa=$(( $(tstat $A w) - wa )) wb=$(( $(tstat $B w) - wb ))
    if [ "$wa" -gt 0 ] && [ "$wb" -gt 0 ]; then pass write-spread-again "write frames: A $wa, B $wb"; else fail write-spread-again "write frames: A $wa, B $wb"; fi
  else
    fail write-spread-again "dd: $(tr '\n' ' ' < /tmp/dd3.err)"
  fi
  drop_caches
  check_eq readback-d3 "$(dd if=$E bs=$MIB skip=$((KVE_D3_OFF / MIB)) count=$((KVE_D3_LEN / MIB)) iflag=direct 2>/dev/null | md5)" "$D3"
  say "INFO d3-md5=$D3"
else
  fail a-rejoined "host did not answer"
fi

finish

#!/bin/bash
# Prepare the guest assets for the kernel-initiator e2e tests, cached under
# .cache/e2e (or $KVE_CACHE):
#   kernel/vmlinuz      Debian's bzImage (linux-image-amd64's dependency)
#   kernel/vmlinux      the same kernel as an ELF (PVH entry, boots faster), if extractable
#   base.cpio           initramfs base: static busybox + the modules the guest needs
#   modules.order       the modules in base.cpio in load order (dependencies first)
#   assets.env          what was prepared (KVE_KVER=..., KVE_KPKG=...)
# Only the Debian apt mirror is used: `apt-get download` + `dpkg -x`, no kernel is installed.
# Idempotent: a second run with everything in place does nothing.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${KVE_CACHE:-$REPO/.cache/e2e}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

log() { echo "e2e-assets: $*" >&2; }
die() { echo "e2e-assets: ERROR: $*" >&2; exit 1; }

# The modules the guest init loads (their dependencies are added below).
WANT_MODULES="virtio_pci virtio_net aoe ext4 crc32c_generic"

if [ -f "$CACHE/assets.env" ] && [ -f "$CACHE/base.cpio" ] && [ -f "$CACHE/kernel/vmlinuz" ] \
   && [ "$(cat "$CACHE/assets.inputs" 2>/dev/null)" = "$WANT_MODULES $(sha1sum "$HERE/tools/mkcpio.py" "$HERE/prepare-assets.sh" | awk '{print $1}' | tr '\n' ' ')" ]; then
  log "up to date in $CACHE ($(cat "$CACHE/assets.env" | tr '\n' ' '))"
  exit 0
fi

command -v python3 >/dev/null || die "python3 is required"
BUSYBOX=""
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && file_is_static=$(LC_ALL=C ldd "$b" 2>&1 || true) && echo "$file_is_static" | grep -q 'not a dynamic'; then
    BUSYBOX=$b; break
  fi
done
[ -n "$BUSYBOX" ] || die "a statically linked busybox is required (apt-get install busybox-static)"

# Resolve the real kernel package behind the linux-image-amd64 metapackage.
resolve_kpkg() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
KPKG=$(resolve_kpkg || true)
if [ -z "$KPKG" ]; then
  log "apt-cache knows no linux-image-amd64 yet; running apt-get update"
  apt-get update -qq
  KPKG=$(resolve_kpkg || true)
fi
[ -n "$KPKG" ] || die "cannot resolve the package behind linux-image-amd64"
log "kernel package: $KPKG"

DEBDIR="$CACHE/debs"
mkdir -p "$DEBDIR"
DEB=$(ls "$DEBDIR"/"${KPKG}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$DEB" ]; then
  log "downloading $KPKG (~70 MB, once)"
  # _apt cannot write into root-owned dirs; download as root into the cache.
  (cd "$DEBDIR" && apt-get download -o APT::Sandbox::User=root "$KPKG" >/dev/null)
  DEB=$(ls "$DEBDIR"/"${KPKG}"_*.deb | head -n1)
fi

EX="$CACHE/extract"
rm -rf "$EX"
mkdir -p "$EX"
dpkg -x "$DEB" "$EX"
KVER=$(ls "$EX/lib/modules" | head -n1)
[ -n "$KVER" ] || die "no lib/modules in $DEB"
MODROOT="$EX/lib/modules/$KVER"

mkdir -p "$CACHE/kernel"
cp "$EX/boot/vmlinuz-$KVER" "$CACHE/kernel/vmlinuz"
rm -f "$CACHE/kernel/vmlinux"
if python3 "$HERE/tools/extract-vmlinux.py" "$CACHE/kernel/vmlinuz" "$CACHE/kernel/vmlinux.tmp" >&2; then
  mv "$CACHE/kernel/vmlinux.tmp" "$CACHE/kernel/vmlinux"
else
  log "could not extract an ELF vmlinux; the tests will boot the bzImage"
fi

# Module path by name (kernel module names treat - and _ alike).
find "$MODROOT/kernel" -name '*.ko' > "$CACHE/modules.all"
modpath() {
  local n=${1//-/_}
  awk -v n="$n" '{ b=$0; sub(/.*\//,"",b); sub(/\.ko$/,"",b); gsub(/-/,"_",b); if (b==n) { print; exit } }' "$CACHE/modules.all"
}
is_builtin() {
  local n=${1//-/_}
  sed 's/-/_/g' "$MODROOT/modules.builtin" | grep -q "/$n\.ko$"
}
moddeps() {
  # The depends= field of the module's .modinfo section (there is no modules.dep).
  grep -a -o 'depends=[^[:cntrl:]]*' "$1" | head -n1 | sed 's/^depends=//' | tr ',' ' '
}

ORDER=()
declare -A SEEN=()
visit() {
  local n=${1//-/_}
  [ -n "${SEEN[$n]:-}" ] && return 0
  SEEN[$n]=1
  if is_builtin "$n"; then log "module $n is built in"; return 0; fi
  local p; p=$(modpath "$n")
  [ -n "$p" ] || die "module $n not found in $KPKG"
  local d
  for d in $(moddeps "$p"); do visit "$d"; done
  ORDER+=("$n")
}
for m in $WANT_MODULES; do visit "$m"; done
log "modules in load order: ${ORDER[*]}"

ROOT="$CACHE/initramfs-base"
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,proc,sys,dev,tmp,mnt,lib/modules,e2e}
cp "$BUSYBOX" "$ROOT/bin/busybox"
: > "$CACHE/modules.order"
for n in "${ORDER[@]}"; do
  cp "$(modpath "$n")" "$ROOT/lib/modules/$n.ko"
  echo "$n" >> "$CACHE/modules.order"
done
cp "$CACHE/modules.order" "$ROOT/lib/modules/order"
python3 "$HERE/tools/mkcpio.py" "$ROOT" > "$CACHE/base.cpio.tmp"
mv "$CACHE/base.cpio.tmp" "$CACHE/base.cpio"
rm -rf "$EX" "$ROOT" "$CACHE/modules.all"

{
  echo "KVE_KPKG=$KPKG"
  echo "KVE_KVER=$KVER"
} > "$CACHE/assets.env"
echo "$WANT_MODULES $(sha1sum "$HERE/tools/mkcpio.py" "$HERE/prepare-assets.sh" | awk '{print $1}' | tr '\n' ' ')" > "$CACHE/assets.inputs"
log "ready in $CACHE: kernel $KVER, base.cpio $(stat -c %s "$CACHE/base.cpio") bytes"

#!/usr/bin/env bash
# QEMU 10.0 beside the system's QEMU 7.2, with no system change: Debian bookworm-backports'
# qemu-system-arm (and the qemu-system-common/-data it pins to its own version) fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` under target/qemu10/. Bookworm's own
# libraries satisfy the binary, so nothing else is unpacked. The OpenGL and SPICE modules
# (qemu-system-modules-opengl, -spice) come too: QEMU 10 probes ui-opengl and ui-spice-core at
# start, and without its own it falls through to 7.2's in /usr/lib and complains ("Only
# modules from the same build can be loaded", "undefined symbol").
#
#   firmware/qemu10.sh [DIR]      (default: target/qemu10)
#
# Idempotent: a second run only prints the path. Prints the path of a wrapper,
# DIR/qemu-system-aarch64, that runs the unpacked binary with its own data directory (-L, the
# BIOS/ROM files of 10.0 instead of 7.2's /usr/share/qemu) and its own module directory
# (QEMU_MODULE_DIR, so that 7.2's modules in /usr/lib are never loaded into 10.0). Use it as
#
#   QEMU=$(firmware/qemu10.sh) QEMU_MACHINE=virt-9.1,iommu=smmuv3 cargo run --release
#
# Needs root on Debian bookworm the first time: it adds bookworm-backports to apt's sources
# (pinned at backports' default priority 100, so nothing installed is upgraded from it) and
# runs apt-get update.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:-$top/target/qemu10}")
version=${QEMU10_VERSION:-1:10.0.2+ds-2+deb13u1~bpo12+1}
wrapper=$dir/qemu-system-aarch64
bin=$dir/root/usr/bin/qemu-system-aarch64

if [ ! -f "$dir/root/usr/lib/x86_64-linux-gnu/qemu/ui-spice-core.so" ] ||
  ! "$bin" --version 2>/dev/null | grep -qF "Debian $version"; then
  list=/etc/apt/sources.list.d/backports.list
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The same mirror bookworm itself comes from.
    echo 'deb http://deb.debian.org/debian bookworm-backports main' >"$list"
  fi
  if ! apt-cache show "qemu-system-arm=$version" >/dev/null 2>&1; then
    apt-get update -qq
  fi
  rm -rf "$dir/debs" "$dir/root"
  mkdir -p "$dir/debs"
  (
    cd "$dir/debs"
    apt-get download -qq "qemu-system-arm=$version" "qemu-system-common=$version" \
      "qemu-system-data=$version" "qemu-system-modules-opengl=$version" \
      "qemu-system-modules-spice=$version" 2>&1 | grep -v unsandboxed || true
  )
  for d in "$dir"/debs/*.deb; do dpkg-deb -x "$d" "$dir/root"; done
  # The binary and the modules it loads at start (the virtio-gpu GL modules, never used here,
  # need virglrenderer, which bookworm has but this machine may lack).
  mods=$dir/root/usr/lib/x86_64-linux-gnu/qemu
  missing=$(ldd "$bin" "$mods"/ui-opengl.so "$mods"/ui-spice-core.so | grep 'not found' || true)
  if [ -n "$missing" ]; then
    echo "QEMU 10 needs libraries this system lacks:" >&2
    echo "$missing" >&2
    exit 1
  fi
fi

cat >"$wrapper.tmp" <<EOF
#!/bin/sh
# Written by firmware/qemu10.sh: QEMU $version unpacked beside the system's QEMU.
QEMU_MODULE_DIR=$dir/root/usr/lib/x86_64-linux-gnu/qemu
export QEMU_MODULE_DIR
exec $bin -L $dir/root/usr/share/qemu "\$@"
EOF
chmod +x "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"
"$wrapper" --version | head -n 1 >&2
echo "$wrapper"

# Sourced by capture.sh and kexec.sh: which Debian arm64 kernel, which QEMU, and the pieces of
# the initramfs that depend on the kernel.
#
# From the environment:
#   KVER          the kernel's ABI name (linux-image-$KVER-unsigned:arm64), e.g. 6.1.0-50-arm64;
#                 default: bookworm's 6.1.0-50-arm64, or with KSUITE the newest in that suite
#   KSUITE        the Debian suite the kernel comes from (default bookworm). Another suite
#                 (trixie: Linux 6.12) is added to apt's sources for arm64 only and pinned at
#                 priority 1 (/etc/apt/preferences.d), so nothing is ever installed from it:
#                 only the kernel is fetched, with apt-get download; busybox and kexec-tools
#                 stay bookworm's.
#   QEMU          the QEMU binary or wrapper (default qemu-system-aarch64;
#                 firmware/qemu10.sh prints one for QEMU 10.0)
#   QEMU_MACHINE  the -M value (default virt,iommu=smmuv3)

ksuite=${KSUITE:-bookworm}
qemu=${QEMU:-qemu-system-aarch64}
qemu_machine=${QEMU_MACHINE:-virt,iommu=smmuv3}

# apt can fetch arm64 packages from bookworm and from $ksuite.
apt_ready() {
  local changed=
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; changed=1; }
  if [ "$ksuite" != bookworm ] &&
    ! grep -rqs "debian $ksuite main" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb [arch=arm64] http://deb.debian.org/debian $ksuite main" \
      >"/etc/apt/sources.list.d/$ksuite-arm64.list"
    printf 'Package: *\nPin: release n=%s\nPin-Priority: 1\n' "$ksuite" \
      >"/etc/apt/preferences.d/$ksuite-low"
    changed=1
  fi
  if [ -n "$changed" ] || [ -z "${apt_updated:-}" ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

# Sets kver: KVER, or bookworm's 6.1.0-50-arm64, or the ABI the suite's linux-image-arm64
# depends on.
resolve_kernel() {
  if [ -n "${KVER:-}" ]; then
    kver=$KVER
  elif [ "$ksuite" = bookworm ]; then
    kver=6.1.0-50-arm64
  else
    apt_ready
    kver=$(apt-cache show "linux-image-arm64:arm64/$ksuite" |
      sed -n 's/^Depends: .*linux-image-\([^ ,]*-arm64\) .*/\1/p' | head -n 1)
    [ -n "$kver" ] || { echo "no linux-image-arm64 in $ksuite" >&2; exit 1; }
  fi
  echo "kernel: linux-image-$kver-unsigned:arm64 ($ksuite)" >&2
}

# Copies the virtio PCI and block modules the kernel ships (under lib/modules or
# usr/lib/modules, .ko or .ko.xz, decompressed here) into $2 in load order, and prints their
# names. A driver built into the kernel (6.12's virtio_pci) has no module and is skipped.
copy_virtio_modules() {
  local root=$1 dest=$2 m f dir
  for dir in "$root/lib/modules/$kver" "$root/usr/lib/modules/$kver"; do
    [ -d "$dir" ] && break
  done
  for m in virtio/virtio_pci_legacy_dev virtio/virtio_pci_modern_dev virtio/virtio_pci \
    block/virtio_blk; do
    f=$dir/kernel/drivers/$m.ko
    if [ -f "$f" ]; then
      cp "$f" "$dest/"
    elif [ -f "$f.xz" ]; then
      xz -dc "$f.xz" >"$dest/${m#*/}.ko"
    else
      continue
    fi
    printf '%s ' "${m#*/}"
  done
}

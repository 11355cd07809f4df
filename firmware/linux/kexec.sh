#!/usr/bin/env bash
# Linux hands the machine to this project's crash stage the way it hands it to a crash kernel:
# Debian's arm64 Linux boots on QEMU's SMMUv3 with `crashkernel=` reserved, keeps a virtio
# disk's DMA going through the SMMU, loads the crash stage (an arm64 Image, built from
# firmware/src/bin/linux_crash.rs) with `kexec -p`, and panics. The crash stage adopts the
# stream table Linux left behind and exits QEMU with its verdict.
#
#   firmware/linux/kexec.sh [OUTDIR]      (default: target/linux-kexec)
#
# CRASH_FEATURES builds the crash stage with cargo features (broken-forget-asids must fail).
#
# Any Debian arm64 kernel, on any QEMU: KVER, KSUITE, QEMU and QEMU_MACHINE (common.sh), e.g.
#   KSUITE=trixie QEMU=$(firmware/qemu10.sh) firmware/linux/kexec.sh target/linux-kexec-6.12
#
# The disk is throttled to 2 requests a second (DISK_IOPS) so that a request is in flight when
# Linux panics, and the crash image is loaded with `kexec -p -i` (no checksum of the image at
# panic time: panic to crash-stage entry in milliseconds instead of about a second). The crash
# stage checks that a request was in flight at its entry ("in flight at entry") and where its
# completion fell: during the bring-up or after the adoption, into Linux's mapping.
#
# Needs: qemu-system-aarch64, cpio, and Debian's arm64 packages, which it fetches with
# `apt-get download` (run as root on Debian: dpkg --add-architecture arm64 && apt-get update,
# done here when missing), and the firmware's toolchain (rustup target aarch64-unknown-none,
# llvm-tools for the flat binary). Exits with the crash stage's verdict: 0 only if it adopted
# Linux's table and reserved exactly the ASIDs of Linux's context descriptors.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$top/target/linux-kexec}")
# shellcheck source=common.sh
. "$top/firmware/linux/common.sh"
resolve_kernel
# The crash kernel's reservation: fixed, so the crash stage can be linked for it.
crash_base=0x50000000
crash_size=64M
mkdir -p "$out/debs" "$out/root" "$out/initramfs"
image=${CRASH_IMAGE:+$(realpath "$CRASH_IMAGE")}
if [ -z "$image" ]; then
  # The crash stage: an ELF linked at the reservation, flattened into an arm64 Image.
  (cd "$top/firmware/linux-crash" && cargo build --release -q ${CRASH_FEATURES:+--features "$CRASH_FEATURES"})
  python3 "$top/firmware/linux-crash/elf2image.py" \
    "$top/firmware/linux-crash/target/aarch64-unknown-none/release/smmu-linux-crash" \
    "$out/crash.img"
  image=$out/crash.img
fi
cd "$out"

# kexec-tools is linked against Xen's control library: its libraries and their own, with the
# C library and the dynamic loader, go into the initramfs.
libs="libc6 zlib1g libxenmisc4.17 libxentoollog1 libxencall1 libxenevtchn1 libxengnttab1
      libxenforeignmemory1 libxendevicemodel1 libxentoolcore1"
if [ ! -f "root/boot/vmlinuz-$kver" ] || [ ! -f root/sbin/kexec ]; then
  apt_ready
  pkgs="linux-image-$kver-unsigned:arm64 busybox-static:arm64 kexec-tools:arm64"
  for l in $libs; do pkgs="$pkgs $l:arm64"; done
  (cd debs && apt-get download -qq $pkgs 2>&1 | grep -v 'unsandboxed' || true)
  for d in debs/*.deb; do dpkg-deb -x "$d" root; done
fi
[ -f root/sbin/kexec ] || { echo "kexec-tools:arm64 did not unpack" >&2; exit 1; }

ird=initramfs
rm -rf $ird && mkdir -p $ird/bin $ird/sbin $ird/proc $ird/sys $ird/dev $ird/lib/modules $ird/lib64 $ird/boot
cp root/bin/busybox $ird/bin/
cp root/sbin/kexec $ird/sbin/
cp -a root/lib/aarch64-linux-gnu $ird/lib/
cp -a root/usr/lib/aarch64-linux-gnu/. $ird/lib/aarch64-linux-gnu/
rm -rf $ird/lib/aarch64-linux-gnu/gconv $ird/lib/aarch64-linux-gnu/audit
ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 $ird/lib/ld-linux-aarch64.so.1
mods=$(copy_virtio_modules root $ird/lib/modules)
echo "virtio modules: ${mods:-none (built in)}" >&2
if [ -n "$image" ]; then cp "$image" $ird/boot/crash.img; fi
cat > $ird/init <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
export LD_LIBRARY_PATH=/lib/aarch64-linux-gnu
for m in $mods; do
  insmod /lib/modules/\$m.ko
done
INIT
cat >> $ird/init <<'INIT'
grep -i crash /proc/iomem | sed 's/^/IOMEM /'
while true; do dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null; done &
sleep 1
if [ -f /boot/crash.img ]; then
  # -i (--no-checks): no SHA-256 of the loaded segments at panic time, so the crash stage
  # is entered within milliseconds, while the disk's request is still in flight.
  if /sbin/kexec -p -i --type Image /boot/crash.img; then
    echo "KEXEC-LOADED $(cat /sys/kernel/kexec_crash_loaded)"
    # The disk's I/O counters (reads completed ... I/Os in progress): the DMA is going.
    echo "DISKSTATS $(grep ' vda ' /proc/diskstats)"
    echo c > /proc/sysrq-trigger
  else
    echo "KEXEC-FAILED"
  fi
else
  /sbin/kexec --version
  echo "KEXEC-NOIMAGE"
fi
poweroff -f
INIT
chmod +x $ird/init
(cd $ird && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initramfs.gz
truncate -s 16M disk.img

timeout "${QEMU_TIMEOUT:-150}" "$qemu" -M "$qemu_machine" -cpu cortex-a57 -m 512M \
  -nographic -semihosting \
  -kernel "root/boot/vmlinuz-$kver" -initrd initramfs.gz \
  -append "console=ttyAMA0 crashkernel=$crash_size@$crash_base cma=16M" \
  -drive file=disk.img,if=none,format=raw,id=d0,throttling.iops-total=${DISK_IOPS:-2} \
  -device virtio-blk-pci,drive=d0,iommu_platform=on,disable-legacy=on,romfile= \
  -nic none -monitor ${QEMU_MONITOR:-none} -serial stdio ${QEMU_EXTRA:-} </dev/null | tee boot.log
status=${PIPESTATUS[0]}
# Linux powering off (kexec failed, or the crash stage never ran) also exits QEMU with 0:
# only the crash stage's own summary line, every check held, counts.
if [ "$status" -eq 0 ] && ! grep -Eq '^verdict: ([0-9]+) of \1 checks held' boot.log; then
  echo "the crash stage did not report a verdict (did kexec -p load it?)" >&2
  status=1
fi
exit "$status"

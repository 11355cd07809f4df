#!/usr/bin/env bash
# Boots Debian's arm64 Linux on QEMU's SMMUv3 with a virtio disk in a DMA domain, keeps the
# disk busy, reads the SMMU's registers from inside the guest with devmem, saves the guest's
# memory as an ELF core, and runs `smmuctl inspect` on the pair: what a crash kernel would make
# of the stream table Linux wrote.
#
#   firmware/linux/capture.sh [OUTDIR]      (default: target/linux-capture)
#
# Any Debian arm64 kernel, on any QEMU: KVER, KSUITE, QEMU and QEMU_MACHINE (common.sh), e.g.
#   KSUITE=trixie QEMU=$(firmware/qemu10.sh) firmware/linux/capture.sh target/linux-capture-6.12
#
# Needs: qemu-system-aarch64, cpio, python3, and Debian's arm64 packages, which it fetches
# with `apt-get download` (run as root on Debian: dpkg --add-architecture arm64 && apt-get
# update, done here when missing). Prints the inspect report; exits with its status
# (0 adopt, 1 full reset, 3 dump incomplete).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$(realpath -m "${1:-$top/target/linux-capture}")
# shellcheck source=common.sh
. "$top/firmware/linux/common.sh"
resolve_kernel
mkdir -p "$out/debs" "$out/root" "$out/initramfs"
cd "$out"

if [ ! -f "root/boot/vmlinuz-$kver" ]; then
  apt_ready
  (cd debs && apt-get download -qq "linux-image-$kver-unsigned:arm64" busybox-static:arm64 2>&1 |
    grep -v unsandboxed || true)
  for d in debs/*.deb; do dpkg-deb -x "$d" root; done
fi

# The initramfs: busybox, the virtio-pci and virtio-blk modules, and an init that prints the
# SMMU's registers and keeps the disk's DMA going.
ird=initramfs
rm -rf $ird && mkdir -p $ird/bin $ird/proc $ird/sys $ird/dev $ird/lib/modules
cp root/bin/busybox $ird/bin/
mods=$(copy_virtio_modules root $ird/lib/modules)
echo "virtio modules: ${mods:-none (built in)}" >&2
cat > $ird/init <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $mods; do
  insmod /lib/modules/\$m.ko
done
INIT
cat >> $ird/init <<'INIT'
# SMMU page 0 on QEMU virt; readable with iomem=relaxed (IO_STRICT_DEVMEM=y).
B=0x09050000
for r in IDR0:0x0 IDR1:0x4 IDR2:0x8 IDR3:0xc IDR4:0x10 IDR5:0x14 IIDR:0x18 AIDR:0x1c \
         CR0:0x20 CR1:0x28 CR2:0x2c GBPA:0x44 GERROR:0x60 GERRORN:0x64 \
         STRTAB_BASE_LO:0x80 STRTAB_BASE_HI:0x84 STRTAB_BASE_CFG:0x88; do
  echo "REG ${r%%:*}=$(devmem $((B + ${r##*:})) 32)"
done
while true; do dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null; done &
echo "CAPTURE-READY"
sleep 100000
INIT
chmod +x $ird/init
(cd $ird && find . | cpio -o -H newc 2>/dev/null | gzip) > initramfs.gz
truncate -s 16M disk.img

rm -f vmcore boot.log monitor.sock
"$qemu" -M "$qemu_machine" -cpu cortex-a57 -m 512M -nographic \
  -kernel "root/boot/vmlinuz-$kver" -initrd initramfs.gz \
  -append "console=ttyAMA0 iomem=relaxed ${LINUX_CMDLINE_EXTRA:-}" \
  -drive file=disk.img,if=none,format=raw,id=d0 \
  -device virtio-blk-pci,drive=d0,iommu_platform=on,disable-legacy=on,romfile= \
  -nic none -monitor unix:monitor.sock,server,nowait -serial file:boot.log &
qemu=$!
trap 'kill $qemu 2>/dev/null || true' EXIT
for _ in $(seq 1 240); do
  grep -q CAPTURE-READY boot.log 2>/dev/null && break
  kill -0 $qemu 2>/dev/null || { echo "QEMU exited before Linux was up" >&2; exit 1; }
  sleep 1
done
grep -q CAPTURE-READY boot.log || { echo "Linux did not come up in 240 s" >&2; exit 1; }
sleep 2 # the disk's DMA is running

# The registers as NAME=VALUE lines (STRTAB_BASE from its two halves), then the memory.
python3 - boot.log regs.txt <<'PY'
import sys
regs = {}
for line in open(sys.argv[1], errors="replace"):
    if line.startswith("REG "):
        name, value = line[4:].strip().split("=")
        regs[name] = int(value, 16)
regs["STRTAB_BASE"] = regs.pop("STRTAB_BASE_HI") << 32 | regs.pop("STRTAB_BASE_LO")
with open(sys.argv[2], "w") as f:
    f.write("# devmem reads of QEMU virt's SMMUv3 under Linux\n")
    for name, value in regs.items():
        f.write(f"{name}={value:#x}\n")
PY
python3 - monitor.sock "$out/vmcore" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(180)

def until_prompt():
    """Reads the monitor until its prompt: the previous command has finished."""
    seen = b""
    while not seen.rstrip().endswith(b"(qemu)"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("the QEMU monitor closed")
        seen += chunk
    return seen

until_prompt()
# dump-guest-memory runs synchronously: the prompt comes back once the core is written.
s.sendall(f"dump-guest-memory {sys.argv[2]}\n".encode())
until_prompt()
s.sendall(b"quit\n")
try:
    while s.recv(4096):
        pass
except OSError:
    pass
PY
# QEMU has quit; if it has not within a few seconds, the dump is complete anyway.
for _ in $(seq 1 10); do kill -0 $qemu 2>/dev/null || break; sleep 0.5; done
kill $qemu 2>/dev/null || true
wait $qemu 2>/dev/null || true
trap - EXIT

smmuctl=${SMMUCTL:-$top/target/release/smmuctl}
[ -x "$smmuctl" ] || (cd "$top" && cargo build --release -q -p smmuctl)
echo "registers: $out/regs.txt, memory: $out/vmcore"
status=0
"$smmuctl" inspect --regs regs.txt --vmcore vmcore || status=$?
exit $status

#!/usr/bin/env python3
"""Flattens the crash stage's ELF into the arm64 Image kexec loads: the bytes of every loadable
segment at its offset from the lowest one (what `objcopy -O binary` does), without needing an
objcopy for aarch64 on the host. Checks that the result starts with the Image header's magic.

    elf2image.py ELF IMAGE
"""
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
elf = open(src, "rb").read()
if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
    sys.exit(f"{src}: not a little-endian ELF64 file")
phoff, = struct.unpack_from("<Q", elf, 0x20)
phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
loads = []
for i in range(phnum):
    p_type, _flags, offset, _vaddr, paddr, filesz, _memsz, _align = struct.unpack_from(
        "<IIQQQQQQ", elf, phoff + i * phentsize)
    if p_type == 1 and filesz > 0:  # PT_LOAD with file contents
        loads.append((paddr, offset, filesz))
if not loads:
    sys.exit(f"{src}: no loadable segment")
base = min(p for p, _, _ in loads)
image = bytearray(max(p + n for p, _, n in loads) - base)
for paddr, offset, filesz in loads:
    image[paddr - base:paddr - base + filesz] = elf[offset:offset + filesz]
if image[56:60] != b"ARM\x64":
    sys.exit(f"{src}: no arm64 Image header at the start (magic at offset 56)")
open(dst, "wb").write(image)
print(f"{dst}: {len(image)} bytes, loaded at {base:#x}")

#!/usr/bin/env python3
"""Extract the uncompressed ELF vmlinux from a compressed x86 bzImage.

Usage: extract-vmlinux.py VMLINUZ OUT

Same idea as the kernel's scripts/extract-vmlinux: look for the magic of each
compression format in the image, decompress from there, and keep the first
result that is an ELF file. Only what Python's standard library can undo is
tried (xz, gzip, bzip2, lzma); Debian's amd64 kernels are xz-compressed.
Booting the ELF directly lets QEMU use the PVH entry point, which skips the
real-mode setup and the in-kernel decompression (seconds under TCG).
"""
import bz2
import lzma
import sys
import zlib

MAGICS = [
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b\x08", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x5d\x00\x00\x00", "lzma"),
]


def try_decompress(kind: str, data: bytes) -> bytes:
    if kind == "xz":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return d.decompress(data)
    if kind == "lzma":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
        return d.decompress(data)
    if kind == "gzip":
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return d.decompress(data)
    if kind == "bzip2":
        d = bz2.BZ2Decompressor()
        return d.decompress(data)
    raise ValueError(kind)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: extract-vmlinux.py VMLINUZ OUT")
    with open(sys.argv[1], "rb") as fh:
        image = fh.read()
    for magic, kind in MAGICS:
        start = 0
        while True:
            pos = image.find(magic, start)
            if pos < 0:
                break
            start = pos + 1
            try:
                out = try_decompress(kind, image[pos:])
            except Exception:
                continue
            if out[:4] == b"\x7fELF":
                with open(sys.argv[2], "wb") as fh:
                    fh.write(out)
                print(f"extract-vmlinux: {kind} stream at offset {pos}, {len(out)} bytes")
                return
    sys.exit("extract-vmlinux: no compressed ELF kernel found in " + sys.argv[1])


if __name__ == "__main__":
    main()

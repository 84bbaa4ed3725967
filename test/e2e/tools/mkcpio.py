#!/usr/bin/env python3
"""Write a newc (SVR4, no CRC) cpio archive of a directory tree to stdout.

Usage: mkcpio.py DIR > out.cpio

Used for the e2e guest's initramfs: the host has no cpio(1), and the Linux
kernel unpacks newc archives (several may be concatenated) by itself.
Every entry is owned by root; modes, symlinks and file contents are kept.
"""
import os
import stat
import sys


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: mkcpio.py DIR > out.cpio")
    root = sys.argv[1]
    out = sys.stdout.buffer
    ino = [1000]

    def pad4(n: int) -> bytes:
        return b"\0" * ((4 - n % 4) % 4)

    def entry(name: str, mode: int, data: bytes, nlink: int = 1) -> None:
        ino[0] += 1
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            "%08X" % v
            for v in (ino[0], mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nameb), 0)
        )
        hdrb = hdr.encode() + nameb
        out.write(hdrb + pad4(len(hdrb)))
        out.write(data + pad4(len(data)))

    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            st = os.lstat(dirpath)
            entry(rel, stat.S_IFDIR | (st.st_mode & 0o7777), b"", 2)
        for f in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
            p = os.path.join(dirpath, f)
            name = os.path.normpath(os.path.join(rel, f))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                entry(name, stat.S_IFLNK | 0o777, os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    entry(name, stat.S_IFREG | (st.st_mode & 0o7777), fh.read())
    entry("TRAILER!!!", 0, b"")
    out.flush()


if __name__ == "__main__":
    main()

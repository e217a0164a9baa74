#!/usr/bin/env python3
"""Turns the captured binlog fixtures into seeds of the `binlog` fuzz target.

A fixture (decoders/binlog/tests/fixtures/*.bin, see capture.sh there) is: u16 file name length,
the name, u64 start offset, the FORMAT_DESCRIPTION_EVENT, then the events as the server wrote
them. A seed of the target (fuzz_targets/binlog.rs) is: one flavour byte (bit 0: CRC32, bit 1:
MariaDB), then every event after the FDE as a u16 length and its bytes. Each fixture gives a
MariaDB seed with checksums (as captured) and one without (footers cut off), so both paths start
from real events.

    python3 fuzz/seed_binlog.py decoders/binlog/tests/fixtures fuzz/corpus/binlog
"""
import os
import struct
import sys


def events(data):
    n = struct.unpack_from('<H', data, 0)[0]
    off = 2 + n + 8
    out = []
    while off + 19 <= len(data):
        size = struct.unpack_from('<I', data, off + 9)[0]
        if size < 19 or off + size > len(data):
            break
        out.append(data[off:off + size])
        off += size
    return out[1:]  # the FDE: the target writes its own


def seed(flavour, evs, crc):
    out = bytearray([flavour])
    for ev in evs:
        if not crc:
            ev = ev[:-4]
        ev = ev[:0xFFFF]
        out += struct.pack('<H', len(ev)) + ev
    return bytes(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        if not name.endswith('.bin'):
            continue
        with open(os.path.join(src, name), 'rb') as f:
            evs = events(f.read())
        stem = name[:-4]
        for flavour, crc, tag in ((3, True, 'mariadb-crc'), (2, False, 'mariadb')):
            with open(os.path.join(dst, f'seed-{stem}-{tag}'), 'wb') as f:
                f.write(seed(flavour, evs, crc))
        print(f'{name}: {len(evs)} events')


if __name__ == '__main__':
    main()

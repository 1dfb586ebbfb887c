#!/usr/bin/python3
# vsnap-backup: full and incremental backups of vsnap snapshots over NBD,
# with only the installed tools: python3-libnbd, qemu-img and qemu-nbd.
#
#   vsnap-backup.py full --server URI --snapshot S --output base.qcow2
#   vsnap-backup.py incremental --server URI --from S --snapshot T \
#       --backing base.qcow2 --output t.qcow2
#   vsnap-backup.py incremental --server URI --from S --snapshot T --in-place image.raw
#
# URI is the live export's URI as `vsnap serve` prints it (nbd+unix:///?socket=...
# or nbd://host:port/). A full copy reads the snapshot's data extents
# (base:allocation: holes and zeroes are not read). An incremental copy connects
# to the alias export snapshot/<T>@<S>, which offers exactly one dirty bitmap,
# qemu:dirty-bitmap:<S>: the blocks that differ between S and T. Only those are
# read; they go into a qcow2 overlay whose backing file is the previous image
# (a chain `qemu-img compare` can check against snapshot T), or, with --in-place,
# straight into a raw image that holds S and then holds T.
# Prints one JSON line: what was copied and how many bytes were read.
import argparse
import json
import os
import subprocess
import sys
import urllib.parse

import nbd

CHUNK = 4 << 20          # largest READ sent (the server advertises 32 MiB)
STATUS_SPAN = (4 << 30) - (1 << 20)   # one BLOCK_STATUS request covers at most this
STATE_ZERO = 2           # base:allocation: reads as zeroes
STATE_DIRTY = 1          # qemu:dirty-bitmap: changed


def export_uri(server, name):
    """The URI of export `name` on the server whose live URI is `server`."""
    u = urllib.parse.urlsplit(server)
    # Built by hand: urlunsplit drops the "//" of nbd+unix:///... when the host is empty.
    uri = f"{u.scheme}://{u.netloc}/{urllib.parse.quote(name, safe='/@:')}"
    return f"{uri}?{u.query}" if u.query else uri


def connect(uri, contexts):
    h = nbd.NBD()
    for c in contexts:
        h.add_meta_context(c)
    h.connect_uri(uri)
    for c in contexts:
        if not h.can_meta_context(c):
            sys.exit(f"vsnap-backup: {uri} does not offer the meta context {c}")
    return h


def status_runs(h, contexts, size):
    """Yield (offset, length, {context: flags}) runs covering [0, size), several contexts merged."""
    pos = 0
    while pos < size:
        got = {c: [] for c in contexts}

        def cb(ctx, off, entries, err):
            if ctx in got:
                got[ctx].extend(zip(entries[0::2], entries[1::2]))
            return 0

        h.block_status(min(STATUS_SPAN, size - pos), pos, cb)
        # Replies may be short, and of different lengths per context: keep the common prefix.
        covered = min(sum(n for n, _ in got[c]) for c in contexts)
        if covered <= 0:
            sys.exit(f"vsnap-backup: block status at {pos} made no progress")
        idx = {c: 0 for c in contexts}
        left = {c: got[c][0][0] for c in contexts}
        at = pos
        while at < pos + covered:
            n = min(min(left[c] for c in contexts), pos + covered - at)
            yield at, n, {c: got[c][idx[c]][1] for c in contexts}
            at += n
            for c in contexts:
                left[c] -= n
                if left[c] == 0 and idx[c] + 1 < len(got[c]):
                    idx[c] += 1
                    left[c] = got[c][idx[c]][0]
        pos += covered


class QcowTarget:
    """A qcow2 image written through qemu-nbd (socket activation by libnbd)."""

    def __init__(self, path, size, backing=None, backing_format=None):
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2"]
        if backing:
            cmd += ["-b", os.path.abspath(backing), "-F", backing_format]
        subprocess.run(cmd + [path, str(size)], check=True)
        self.h = nbd.NBD()
        self.h.connect_systemd_socket_activation(["qemu-nbd", "-f", "qcow2", "--discard=unmap", path])

    def write(self, data, off):
        self.h.pwrite(data, off)

    def zero(self, off, n):
        self.h.zero(n, off)

    def close(self):
        self.h.flush()
        self.h.shutdown()


class RawTarget:
    """A raw image file: new and sparse for a full copy, or updated in place."""

    def __init__(self, path, size, create):
        self.fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_TRUNC if create else 0), 0o600)
        if create:
            os.ftruncate(self.fd, size)
        elif os.fstat(self.fd).st_size != size:
            sys.exit(f"vsnap-backup: {path} is {os.fstat(self.fd).st_size} bytes, the volume {size}")

    def write(self, data, off):
        os.pwrite(self.fd, data, off)

    def zero(self, off, n):
        # Fill with zeroes: the file may hold an older image at these offsets.
        for o in range(off, off + n, CHUNK):
            os.pwrite(self.fd, bytes(min(CHUNK, off + n - o)), o)

    def close(self):
        os.fsync(self.fd)
        os.close(self.fd)


def image_format(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", path], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["format"]


def copy(src, target, contexts, want, size):
    """Copy the runs `want(flags)` selects: 'read', 'zero' or None. Returns (bytes read, runs copied)."""
    read = 0
    runs = 0
    for off, n, flags in status_runs(src, contexts, size):
        what = want(flags)
        if what is None:
            continue
        runs += 1
        if what == "zero":
            target.zero(off, n)
            continue
        for o in range(off, off + n, CHUNK):
            k = min(CHUNK, off + n - o)
            target.write(src.pread(k, o), o)
            read += k
    return read, runs


def main():
    p = argparse.ArgumentParser(description="Full and incremental backups of vsnap snapshots over NBD.")
    sub = p.add_subparsers(dest="mode", required=True)
    f = sub.add_parser("full", help="copy a whole snapshot")
    f.add_argument("--server", required=True, help="the live export's URI, as vsnap serve prints it")
    f.add_argument("--snapshot", required=True)
    f.add_argument("--output", required=True)
    f.add_argument("--format", choices=["qcow2", "raw"], default="qcow2")
    i = sub.add_parser("incremental", help="copy what changed from one snapshot to a later one")
    i.add_argument("--server", required=True)
    i.add_argument("--from", dest="frm", required=True, help="the snapshot the previous image holds")
    i.add_argument("--snapshot", required=True, help="the later snapshot to copy")
    g = i.add_mutually_exclusive_group(required=True)
    g.add_argument("--output", help="new qcow2 overlay (needs --backing)")
    g.add_argument("--in-place", help="raw image holding --from, updated to hold --snapshot")
    i.add_argument("--backing", help="the previous image of the chain (qcow2 or raw)")
    a = p.parse_args()

    if a.mode == "full":
        src = connect(export_uri(a.server, f"snapshot/{a.snapshot}"), ["base:allocation"])
        size = src.get_size()
        target = QcowTarget(a.output, size) if a.format == "qcow2" else RawTarget(a.output, size, True)
        # A new image reads as zeroes already: zero extents are skipped, not written.
        read, runs = copy(src, target, ["base:allocation"], lambda fl: None if fl["base:allocation"] & STATE_ZERO else "read", size)
        out = a.output
    else:
        bitmap = f"qemu:dirty-bitmap:{a.frm}"
        ctxs = [bitmap, "base:allocation"]
        src = connect(export_uri(a.server, f"snapshot/{a.snapshot}@{a.frm}"), ctxs)
        size = src.get_size()
        if a.output:
            if not a.backing:
                sys.exit("vsnap-backup: --output needs --backing (the image holding --from)")
            target = QcowTarget(a.output, size, a.backing, image_format(a.backing))
            out = a.output
        else:
            target = RawTarget(a.in_place, size, False)
            out = a.in_place

        def want(fl):
            if not fl[bitmap] & STATE_DIRTY:
                return None
            return "zero" if fl["base:allocation"] & STATE_ZERO else "read"

        read, runs = copy(src, target, ctxs, want, size)
    target.close()
    src.shutdown()
    print(json.dumps({"mode": a.mode, "snapshot": a.snapshot, "from": getattr(a, "frm", None), "output": out, "size": size, "bytesRead": read, "runs": runs}))


if __name__ == "__main__":
    main()

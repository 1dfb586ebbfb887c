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
# Prints one JSON line: what was copied (the snapshots by name and id, whichever
# way they were given: a name, an id or "latest") and how many bytes were read.
import argparse
import json
import os
import re
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


def server_snapshots(server):
    """[(id, name)] of the server's snapshots, from its export list.

    vsnap serve lists "snapshot/<name>" for each snapshot, then "snapshot/<id>"
    for each, in the same order (src/serve/exports.ts); a name is never all
    digits, so the two runs pair up by position.
    """
    h = nbd.NBD()
    h.set_opt_mode(True)
    h.connect_uri(server)
    names = []
    h.opt_list(lambda name, description: names.append(name) or 0)
    h.opt_abort()
    refs = [n[len("snapshot/"):] for n in names if n.startswith("snapshot/")]
    ids = [int(r) for r in refs if re.fullmatch(r"[0-9]+", r)]
    named = [r for r in refs if not re.fullmatch(r"[0-9]+", r)]
    if len(ids) != len(named):
        sys.exit(f"vsnap-backup: {server} lists {len(named)} snapshot names and {len(ids)} ids: cannot pair them")
    return list(zip(ids, named))


def resolve(snaps, ref, server):
    """(id, name) of a snapshot given by name, id or "latest" (the greatest id)."""
    if ref == "latest":
        found = max(snaps, default=None)
    elif re.fullmatch(r"[0-9]+", ref):
        found = next((s for s in snaps if s[0] == int(ref)), None)
    else:
        found = next((s for s in snaps if s[1] == ref), None)
    if found is None:
        sys.exit(f"vsnap-backup: no snapshot {ref!r} on {server}")
    return found


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
    # Resolved once, then opened by id (ids are never reused): the copy is of
    # the snapshot printed even if another is created meanwhile.
    snaps = server_snapshots(a.server)
    snap_id, snap_name = resolve(snaps, a.snapshot, a.server)
    from_id, from_name = resolve(snaps, a.frm, a.server) if a.mode == "incremental" else (None, None)
    # The images an incremental copy starts from must be there: said in one line before any copying.
    if a.mode == "incremental":
        for flag, image in (("--in-place", a.in_place), ("--backing", a.backing)):
            if image is not None and not os.path.exists(image):
                sys.exit(f"vsnap-backup: {image}: no such file ({flag}: the image that holds snapshot {from_id} {from_name!r}, --from)")

    if a.mode == "full":
        src = connect(export_uri(a.server, f"snapshot/{snap_id}"), ["base:allocation"])
        size = src.get_size()
        target = QcowTarget(a.output, size) if a.format == "qcow2" else RawTarget(a.output, size, True)
        # A new image reads as zeroes already: zero extents are skipped, not written.
        read, runs = copy(src, target, ["base:allocation"], lambda fl: None if fl["base:allocation"] & STATE_ZERO else "read", size)
        out = a.output
    else:
        if from_id >= snap_id:
            sys.exit(f"vsnap-backup: --from {a.frm} (snapshot {from_id}) is not older than --snapshot {a.snapshot} (snapshot {snap_id})")
        bitmap = f"qemu:dirty-bitmap:{from_name}"
        ctxs = [bitmap, "base:allocation"]
        src = connect(export_uri(a.server, f"snapshot/{snap_id}@{from_id}"), ctxs)
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
    print(json.dumps({
        "mode": a.mode,
        "snapshot": snap_name,
        "snapshotId": snap_id,
        "from": from_name,
        "fromId": from_id,
        "output": out,
        "size": size,
        "bytesRead": read,
        "runs": runs,
    }))


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        # A file the script opens (a directory, no permission, a full disk): one line, exit 1, no traceback.
        where = f"{e.filename}: " if e.filename else ""
        sys.exit(f"vsnap-backup: {where}{e.strerror or e}")
    except subprocess.CalledProcessError as e:
        err = (e.stderr or "").strip().splitlines()
        sys.exit(f"vsnap-backup: {' '.join(map(str, e.cmd))} failed (exit {e.returncode}){': ' + err[-1] if err else ''}")

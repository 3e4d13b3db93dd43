"""Writing a snapshot out: straight to a host directory (safely), or as a tar stream."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbank._hostfs import open_dir_nofollow
from sandbank.providers.base import FileEntry
from sandbank.snapshots._format import SMALL_FILE, Node
from sandbank.snapshots._repo import Repo, zero_id
from sandbank.snapshots.errors import CorruptObject, MissingObject, TargetNotEmpty

if TYPE_CHECKING:
    from sandbank.snapshots._ingest import Excluder

log = logging.getLogger("sandbank.snapshots")

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


MTIME_TOLERANCE_NS = 1000
"""mtimes equal within this are equal (a sandbox lists them as floats)."""


@dataclass
class Counts:
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    removed: int = 0
    files_written: int = 0
    bytes_written: int = 0
    unchanged: int = 0

    def keep(self, node: Node) -> None:
        """Count a file or symlink that is already right in the target."""
        self.unchanged += 1
        if node.type == "file":
            self.files += 1
            self.bytes += node.size
        else:
            self.symlinks += 1


class BlobSource:
    """Plaintext chunks for a restore; remote packs are spooled to a host temp dir first."""

    def __init__(self, repo: Repo, needed: set[bytes], workers: int = 8) -> None:
        self.repo = repo
        self._spool: Any = None
        self._paths: dict[str, str] = {}
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        if repo.backend.local:
            return
        by_pack: dict[str, list[tuple[int, int]]] = {}
        for blob_id in needed:
            loc = repo.loc(blob_id)
            by_pack.setdefault(loc.pack, []).append((loc.offset, loc.offset + loc.length))
        from sandbank.snapshots._repo import spool_dir

        self._spool = spool_dir()

        def fetch(pack: str, ranges: list[tuple[int, int]]) -> None:
            path = os.path.join(self._spool.name, pack)
            ranges.sort()
            merged: list[list[int]] = []
            for start, end in ranges:
                if merged and start - merged[-1][1] < 1024 * 1024:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            with open(path, "wb") as fh:
                for start, end in merged:
                    data = repo.backend.get_range(f"packs/{pack}", start, end)
                    fh.seek(start)
                    fh.write(data)
            self._paths[pack] = path

        with ThreadPoolExecutor(workers, thread_name_prefix="sandbank-download") as pool:
            for f in [pool.submit(fetch, p, r) for p, r in by_pack.items()]:
                f.result()

    def get(self, blob_id: bytes) -> bytes:
        if self._spool is None:
            return self.repo.read_blob(blob_id)
        loc = self.repo.loc(blob_id)
        with self._lock:
            fd = self._fds.get(loc.pack)
            if fd is None:
                fd = self._fds[loc.pack] = os.open(
                    self._paths[loc.pack], os.O_RDONLY | os.O_CLOEXEC
                )
        data = os.pread(fd, loc.length, loc.offset)
        if len(data) != loc.length:
            raise CorruptObject(f"packs/{loc.pack}", f"is truncated at offset {loc.offset}")
        return self.repo.codec.decode_blob(
            blob_id, data, loc.flags, loc.raw_length, f"packs/{loc.pack}"
        )

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._spool is not None:
            self._spool.cleanup()


def needed_blobs(entries: Sequence[tuple[bytes, Node]]) -> set[bytes]:
    out: set[bytes] = set()
    for _, node in entries:
        if node.chunks:
            out.update(node.chunks)
    return out


def check_available(repo: Repo, needed: set[bytes]) -> None:
    for blob_id in needed:
        if blob_id not in repo.index.blobs:
            raise MissingObject(
                f"blob {blob_id.hex()}", "no pack index lists it (its pack was deleted or lost)"
            )


def _remove(name: bytes, dir_fd: int) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(os.fsdecode(name), dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def restore_host(
    repo: Repo,
    root_tree: bytes,
    target: str,
    replace: bool,
    report: Callable[[int], None] | None,
    workers: int,
    base_tree: bytes | None = None,
    keep: Excluder | None = None,
) -> Counts:
    """Write a snapshot into a host directory. Never follows a symlink inside the target.

    ``base_tree``: a snapshot the target is asserted to hold; directories whose tree equals
    its tree at the same path are taken as unchanged and not read at all. ``keep``: target
    entries it matches that the snapshot lacks are left alone (the snapshot's excludes).
    """
    counts = Counts()
    os.makedirs(target, exist_ok=True)
    root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if os.listdir(root_fd) and not replace:
            raise TargetNotEmpty(repr(target))
        entries = repo.walk(root_tree)
        check_available(repo, needed_blobs(entries))
        trees = repo.load_trees([root_tree])
        if base_tree is not None:
            trees = {**repo.load_trees([base_tree]), **trees}
        _restore_into(
            repo, trees, root_tree, root_fd, source_for, report, workers, counts, base_tree, keep
        )
    finally:
        os.close(root_fd)
    return counts


def source_for(repo: Repo, files: list[Node]) -> BlobSource:
    needed: set[bytes] = set()
    for node in files:
        needed.update(node.chunks or ())
    return BlobSource(repo, needed)


def _same(st: os.stat_result, node: Node, dir_fd: int) -> bool:
    """Whether an existing entry already is ``node`` (type, size, mode, mtime, link target)."""
    if abs(st.st_mtime_ns - node.mtime_ns) > MTIME_TOLERANCE_NS:
        return False
    if node.type == "file":
        return (
            stat.S_ISREG(st.st_mode)
            and st.st_size == node.size
            and stat.S_IMODE(st.st_mode) == node.mode
        )
    if node.type == "symlink" and stat.S_ISLNK(st.st_mode):
        try:
            return os.readlink(node.name, dir_fd=dir_fd) == (node.target or b"")
        except OSError:
            return False
    return False


def _restore_into(
    repo: Repo,
    trees: dict[bytes, list[Node]],
    root_tree: bytes,
    root_fd: int,
    make_source: Callable[[Repo, list[Node]], BlobSource],
    report: Callable[[int], None] | None,
    workers: int,
    counts: Counts,
    base_tree: bytes | None = None,
    keep: Excluder | None = None,
) -> None:
    """Make the directory under ``root_fd`` exactly the snapshot, writing only what differs.

    An existing file or symlink whose type, size, mode, mtime (and link target) match the
    snapshot is left alone; everything else that differs is removed and written anew, and
    entries the snapshot lacks are removed. Only the chunks of written files are fetched.
    """
    # Phase 1: directories (top-down), removals, symlinks; collect file jobs per directory.
    dirs: list[tuple[list[bytes], Node | None, bytes]] = [([], None, root_tree)]
    bases: list[bytes | None] = [base_tree]  # the base's tree at each of dirs (None: unknown)
    jobs: list[tuple[list[bytes], list[Node]]] = []
    i = 0
    while i < len(dirs):
        parts, _, tid = dirs[i]
        base_tid = bases[i]
        i += 1
        nodes = trees[tid]
        if base_tid is not None and base_tid == tid:
            _count_unchanged(trees, tid, counts)  # the target holds this subtree already
            continue
        based = (
            {n.name: n for n in trees[base_tid]} if base_tid is not None and base_tid in trees
            else {}
        )  # fmt: skip
        fd = open_dir_nofollow(root_fd, parts)
        try:
            wanted = {n.name: n for n in nodes}
            existing = [os.fsencode(n) for n in os.listdir(fd)]
            same: set[bytes] = set()
            for name in existing:
                node = wanted.get(name)
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                rel = b"/".join([*parts, name])
                if node is None and keep and keep.excluded(rel, stat.S_ISDIR(st.st_mode)):
                    continue
                if node is not None:
                    if node.type == "dir" and stat.S_ISDIR(st.st_mode):
                        continue
                    if node.type != "dir" and _same(st, node, fd):
                        same.add(name)
                        continue
                _remove(name, fd)
                if node is None:
                    counts.removed += 1
            files = []
            for node in nodes:
                if node.name in same:
                    counts.keep(node)
                elif node.type == "dir":
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(node.name, 0o700, dir_fd=fd)
                    dirs.append(([*parts, node.name], node, node.tree or b""))
                    was = based.get(node.name)
                    bases.append(was.tree or b"" if was is not None and was.type == "dir" else None)
                    counts.dirs += 1
                elif node.type == "symlink":
                    os.symlink(node.target or b"", node.name, dir_fd=fd)
                    os.utime(
                        node.name,
                        ns=(node.mtime_ns, node.mtime_ns),
                        dir_fd=fd,
                        follow_symlinks=False,
                    )
                    counts.symlinks += 1
                else:
                    files.append(node)
            if files:
                jobs.append((parts, files))
        finally:
            os.close(fd)

    # Phase 2: file contents, spread over threads (big files are jobs of their own).
    split: list[tuple[list[bytes], list[Node]]] = []
    for parts, files in jobs:
        small = [f for f in files if f.size <= SMALL_FILE]
        split.extend((parts, [f]) for f in files if f.size > SMALL_FILE)
        for k in range(0, len(small), 128):
            split.append((parts, small[k : k + 128]))
    split.sort(key=lambda j: -sum(f.size for f in j[1]))
    if report is not None and hasattr(report, "total"):
        report.total = sum(f.size for _, files in jobs for f in files)  # progress: only writes
    lock = threading.Lock()
    source = make_source(repo, [f for _, files in jobs for f in files])

    def write_files(parts: list[bytes], files: list[Node]) -> None:
        fd = open_dir_nofollow(root_fd, parts)
        try:
            for node in files:
                _write_file(fd, node, source, repo)
                with lock:
                    counts.files += 1
                    counts.bytes += node.size
                    counts.files_written += 1
                    counts.bytes_written += node.size
                if report:
                    report(node.size)
        finally:
            os.close(fd)

    try:
        if workers > 1 and len(split) > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="sandbank-restore") as pool:
                for f in [pool.submit(write_files, p, fl) for p, fl in split]:
                    f.result()
        else:
            for p, fl in split:
                write_files(p, fl)
    finally:
        source.close()

    # Phase 3: directory modes and mtimes, deepest first (writing files changed them).
    for parts, node, _ in reversed(dirs):
        if node is None:
            continue
        fd = open_dir_nofollow(root_fd, parts)
        try:
            os.fchmod(fd, node.mode)
            os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
        finally:
            os.close(fd)


def _count_unchanged(trees: dict[bytes, list[Node]], tid: bytes, counts: Counts) -> None:
    stack = [tid]
    while stack:
        for node in trees[stack.pop()]:
            if node.type == "dir":
                counts.dirs += 1
                if node.tree:
                    stack.append(node.tree)
                continue
            counts.keep(node)


def _write_file(dir_fd: int, node: Node, source: BlobSource, repo: Repo) -> None:
    fd = os.open(node.name, _FILE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        chunks = node.chunks or []
        if len(chunks) == 1:
            data = source.get(chunks[0])
            if data:
                os.write(fd, data) if len(data) < 65536 else _write_all(fd, data, 0)
        else:
            offset = 0
            for blob_id in chunks:
                raw = repo.loc(blob_id).raw_length
                if blob_id != zero_id(repo.codec, raw):
                    _write_all(fd, source.get(blob_id), offset)
                offset += raw
            os.ftruncate(fd, offset)  # trailing zero chunks become a hole
        os.fchmod(fd, node.mode)
        os.utime(fd, ns=(node.mtime_ns, node.mtime_ns))
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


# -- tar ------------------------------------------------------------------------------------


class _ChunkReader:
    """A readable file over a file node's chunks, for tarfile.addfile."""

    def __init__(self, node: Node, source: BlobSource, report: Callable[[int], None] | None):
        self._chunks = list(node.chunks or [])
        self._source = source
        self._buf = memoryview(b"")
        self._report = report

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        want = n if n >= 0 else 1 << 62
        while want > 0:
            if not self._buf:
                if not self._chunks:
                    break
                data = self._source.get(self._chunks.pop(0))
                if self._report:
                    self._report(len(data))
                self._buf = memoryview(data)
            part, self._buf = self._buf[:want], self._buf[want:]
            parts.append(bytes(part))
            want -= len(part)
        return b"".join(parts)


@dataclass
class SandboxPlan:
    """What a restore into a sandbox must do: remove some paths, then import ``items``."""

    remove: list[str]
    """Paths to remove first (entries the snapshot lacks, or of another type)."""
    items: list[tuple[bytes, Node]]
    """Tar members to import, in order: new directories parents first, files and symlinks,
    then every touched directory again, deepest first (to set its mode and mtime last)."""
    counts: Counts
    write_bytes: int = 0


def plan_sandbox(entries: list[tuple[bytes, Node]], existing: Sequence[FileEntry]) -> SandboxPlan:
    """Compare a sandbox's listing with a snapshot; plan the smallest import making them equal.

    An entry is unchanged when its type, size, mode and mtime match (a symlink: its target;
    tar imports cannot set a link's mtime, so it is not compared). A changed
    file or symlink is simply imported again (the import replaces it); only entries the
    snapshot lacks, and entries of another type, are removed first.
    """
    counts = Counts()
    want = dict(entries)
    have = {os.fsencode(e.path): e for e in existing}
    remove: list[str] = []
    gone: list[bytes] = []
    removed: set[bytes] = set()
    for path in sorted(have, key=lambda p: p.split(b"/")):
        parts = path.split(b"/")
        if any(b"/".join(parts[:i]) in removed for i in range(1, len(parts))):
            continue  # inside a directory already removed
        node = want.get(path)
        if node is None or node.type != have[path].type:
            remove.append(os.fsdecode(path))
            gone.append(path)
            removed.add(path)
            counts.removed += node is None

    def same(e: FileEntry, node: Node) -> bool:
        if node.type == "symlink":
            # Only the target: tar imports (docker's, Python's) cannot set a link's mtime, so
            # comparing it would resend every link, and re-stamp its directory, every time.
            return os.fsencode(e.link_target or "") == (node.target or b"")
        if abs(round(e.mtime * 1e9) - node.mtime_ns) > MTIME_TOLERANCE_NS:
            return False
        return e.size == node.size and (e.mode & 0o7777) == node.mode

    new_dirs: list[tuple[bytes, Node]] = []
    writes: list[tuple[bytes, Node]] = []
    touched: set[bytes] = set()
    for path, node in entries:
        e: FileEntry | None = None if path in removed else have.get(path)
        parent = path.rpartition(b"/")[0]
        if node.type == "dir":
            counts.dirs += 1
            if e is None:
                new_dirs.append((path, node))
                touched.add(path)
            elif (
                abs(round(e.mtime * 1e9) - node.mtime_ns) > MTIME_TOLERANCE_NS
                or (e.mode & 0o7777) != node.mode
            ):
                touched.add(path)
            if e is None and parent:
                touched.add(parent)
            continue
        if node.type == "file":
            counts.files += 1
            counts.bytes += node.size
        else:
            counts.symlinks += 1
        if e is not None and same(e, node):
            counts.unchanged += 1
            continue
        writes.append((path, node))
        if node.type == "file":
            counts.files_written += 1
            counts.bytes_written += node.size
        if parent:
            touched.add(parent)
    for path in gone:
        parent = path.rpartition(b"/")[0]
        if parent:
            touched.add(parent)
    # Every ancestor of a touched directory that exists in the snapshot gets its times reset.
    dirs = [(p, n) for p, n in entries if n.type == "dir" and p in touched]
    dirs.sort(key=lambda pn: (-pn[0].count(b"/"), pn[0]))
    return SandboxPlan(remove, new_dirs + writes + dirs, counts, counts.bytes_written)


def tar_members(items: Sequence[tuple[bytes, Node]]) -> list[tarfile.TarInfo]:
    """The member headers ``write_tar(items=items)`` writes, in order (for a provider's check)."""
    out = []
    for path, node in items:
        info = tarfile.TarInfo(os.fsdecode(path))
        if node.type == "dir":
            info.type = tarfile.DIRTYPE
        elif node.type == "symlink":
            info.type = tarfile.SYMTYPE
            info.linkname = os.fsdecode(node.target or b"")
        else:
            info.size = node.size
        out.append(info)
    return out


_TYPEFLAG = {"file": b"0", "dir": b"5", "symlink": b"2"}
_OCTAL_LIMIT = 8**11
_BLOCK = 512
_RECORD = 20 * _BLOCK
_FLUSH = 4 * 1024 * 1024
_BATCH = 4 * 1024 * 1024
_ZEROS = bytes(_RECORD)


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return b"%d" % n + body


_UID_GID = b"0000000\x000000000\0"
_MAGIC_DEVS = b"ustar\x0000" + bytes(64) + b"0000000\x000000000\0"  # magic .. devminor
_CHECKSUM_BASE = sum(_UID_GID) + sum(_MAGIC_DEVS) + 8 * ord(" ")


def _header_block(
    name: bytes, typeflag: bytes, mode: int, size: int, mtime: int, linkname: bytes
) -> bytes:
    """One ustar header block (the checksum sums only the fields that vary)."""
    fields = b"%07o\0" % mode
    numbers = b"%011o\0%011o\0" % (size, mtime)
    checksum = _CHECKSUM_BASE + sum(name) + sum(fields) + sum(numbers) + typeflag[0] + sum(linkname)
    return b"".join(
        (
            name,
            _ZEROS[: 100 - len(name)],
            fields,
            _UID_GID,
            numbers,
            b"%06o\0 " % checksum,
            typeflag,
            linkname,
            _ZEROS[: 100 - len(linkname)],
            _MAGIC_DEVS,
            _ZEROS[:167],
        )
    )


def _ascii_fits(value: bytes) -> bool:
    return len(value) <= 100 and value.isascii()


def tar_header(path: bytes, node: Node) -> bytes:
    """The header block(s) of one member, as Python's tarfile (PAX format) would read them.

    Plain ustar when it can hold everything; otherwise a PAX extended header carries the
    long or non-ASCII path and link target (raw bytes, ``hdrcharset=BINARY`` when they are
    not UTF-8), a sub-second mtime (in nanoseconds) and a size of 8 GiB or more.
    """
    name = path + b"/" if node.type == "dir" else path
    link = node.target or b"" if node.type == "symlink" else b""
    size = node.size if node.type == "file" else 0
    ns = node.mtime_ns
    seconds = ns // 1_000_000_000
    records: list[bytes] = []
    if not _ascii_fits(name):
        records.append(_pax_record(b"path", name))
        name = name[-100:].decode("ascii", "replace").encode("ascii", "replace")
    if not _ascii_fits(link):
        records.append(_pax_record(b"linkpath", link))
        link = b""
    if ns % 1_000_000_000 or not 0 <= seconds < _OCTAL_LIMIT:
        sign, whole = ("-", -ns) if ns < 0 else ("", ns)
        value = f"{sign}{whole // 1_000_000_000}.{whole % 1_000_000_000:09d}"
        records.append(_pax_record(b"mtime", value.encode()))
        seconds = min(max(seconds, 0), _OCTAL_LIMIT - 1)
    if size >= _OCTAL_LIMIT:
        records.append(_pax_record(b"size", b"%d" % size))
    field = size if size < _OCTAL_LIMIT else 0
    header = _header_block(name, _TYPEFLAG[node.type], node.mode & 0o7777, field, seconds, link)
    if not records:
        return header
    if any(not r.isascii() for r in records):
        try:
            for r in records:
                r.decode("utf-8")
        except UnicodeDecodeError:
            records.insert(0, _pax_record(b"hdrcharset", b"BINARY"))
    body = b"".join(records)
    pax = _header_block(b"././@PaxHeader", b"x", 0o644, len(body), 0, b"")
    return pax + body + _ZEROS[: -len(body) % _BLOCK] + header


def write_tar(
    fileobj: Any,
    repo: Repo,
    root_tree: bytes,
    report: Callable[[int], None] | None,
    items: Sequence[tuple[bytes, Node]] | None = None,
    workers: int = 2,
) -> Counts:
    """Write a snapshot (or just ``items`` of it) as a PAX tar, members relative to the root.

    Headers are built here directly; chunks are read, decompressed and checked by
    ``workers`` threads (zstd and BLAKE3 release the GIL) a few MiB ahead of the writer, and
    the output goes to ``fileobj.write`` in pieces of about 4 MiB. Every chunk is checked
    against its hash before any byte of it is written; sizes are checked against the index
    before the first byte of the archive.
    """
    counts = Counts()
    entries = repo.walk(root_tree) if items is None else items
    needed = needed_blobs(entries)
    check_available(repo, needed)
    # Plan the reads: batches of consecutive chunks, in archive order.
    batches: list[list[bytes]] = []
    batch: list[bytes] = []
    batch_bytes = 0
    for path, node in entries:
        if node.type != "file":
            continue
        total = 0
        for blob_id in node.chunks or ():
            raw = repo.loc(blob_id).raw_length
            total += raw
            batch.append(blob_id)
            batch_bytes += raw
            if batch_bytes >= _BATCH or len(batch) >= 1024:
                batches.append(batch)
                batch, batch_bytes = [], 0
        if total != node.size:
            raise CorruptObject(
                f"file {os.fsdecode(path)!r}",
                f"its chunks hold {total} bytes, its directory entry says {node.size}",
            )
    if batch:
        batches.append(batch)
    source = BlobSource(repo, needed)
    codec = repo.codec

    def decode(ids: list[bytes]) -> list[bytes]:
        out = []
        for blob_id in ids:
            raw = repo.loc(blob_id).raw_length
            if raw >= 4096 and blob_id == zero_id(codec, raw):
                out.append(bytes(raw))  # a hole of a sparse file: no need to read it
            else:
                out.append(source.get(blob_id))
        return out

    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="sandbank-tar")
    try:
        pending: list[Any] = []
        ahead = 2 * max(1, workers) + 2
        next_batch = 0

        def blobs() -> Any:
            nonlocal next_batch
            while pending or next_batch < len(batches):
                while next_batch < len(batches) and len(pending) < ahead:
                    pending.append(pool.submit(decode, batches[next_batch]))
                    next_batch += 1
                yield from pending.pop(0).result()

        chunks = blobs()
        out: list[bytes] = []
        buffered = 0
        written = 0
        for path, node in entries:
            header = tar_header(path, node)
            out.append(header)
            buffered += len(header)
            if node.type == "dir":
                counts.dirs += 1
            elif node.type == "symlink":
                counts.symlinks += 1
            else:
                for _ in node.chunks or ():
                    data = next(chunks)
                    out.append(data)
                    buffered += len(data)
                    if report:
                        report(len(data))
                if node.size % _BLOCK:
                    out.append(_ZEROS[: _BLOCK - node.size % _BLOCK])
                    buffered += len(out[-1])
                counts.files += 1
                counts.bytes += node.size
            if buffered >= _FLUSH:
                fileobj.write(b"".join(out))
                written += buffered
                out, buffered = [], 0
        out.append(_ZEROS[: 2 * _BLOCK])
        buffered += 2 * _BLOCK
        out.append(_ZEROS[: -(written + buffered) % _RECORD])
        fileobj.write(b"".join(out))
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
        source.close()
    counts.files_written, counts.bytes_written = counts.files, counts.bytes
    return counts

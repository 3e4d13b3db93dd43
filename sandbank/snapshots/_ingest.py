"""Reading a workspace into the store: scan, compare with the parent, chunk, build trees."""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

import pathspec
from pyfastcdc import FastCDC

from sandbank._hostfs import entry_type, open_dir_nofollow
from sandbank.errors import ConfigurationError
from sandbank.providers._tar import TarGuard, TarReader, member_path
from sandbank.providers.base import FileEntry
from sandbank.snapshots._format import (
    CDC_AVG,
    CDC_MAX,
    CDC_MIN,
    KIND_CHUNK,
    KIND_TREE,
    SMALL_FILE,
    Node,
    encode_tree,
)
from sandbank.snapshots._repo import PackWriter, Repo
from sandbank.snapshots.errors import MissingObject, SourceChanged

log = logging.getLogger("sandbank.snapshots")

ReadReport = Callable[[int], None]
T = TypeVar("T")


@dataclass(slots=True)
class ScanNode:
    name: bytes
    type: str
    mode: int
    mtime_ns: int
    size: int = 0
    target: bytes | None = None
    path: bytes = b""
    ino: tuple[int, int] | None = None
    children: dict[bytes, ScanNode] | None = None
    chunks: list[bytes] | None = None
    old_tree: bytes | None = None
    old: dict[bytes, Node] | None = None


@dataclass
class IngestResult:
    tree: bytes
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    logical_bytes: int = 0
    read_bytes: int = 0
    referenced: set[bytes] = field(default_factory=set)
    trees: dict[bytes, bytes] = field(default_factory=dict)
    bundle_complete: bool = True


class Excluder:
    """Gitignore-style patterns (``pathspec``): ``node_modules/`` matches directories at any
    depth, ``/build`` only at the root, ``*.pyc`` anywhere, ``!keep.pyc`` takes one back."""

    def __init__(self, patterns: Iterable[str]) -> None:
        lines = [p for p in patterns if p.strip()]
        try:
            self._spec = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        except Exception as exc:
            raise ConfigurationError(
                f"exclude patterns {lines!r} are not gitignore patterns ({exc}); fix them"
            ) from None

    def __bool__(self) -> bool:
        return self._spec is not None

    def excluded(self, rel: bytes, is_dir: bool) -> bool:
        if self._spec is None:
            return False
        return self._spec.match_file(os.fsdecode(rel) + ("/" if is_dir else ""))

    def kept(self, entries: Sequence[FileEntry]) -> list[FileEntry]:
        """``entries`` without the excluded ones and everything below an excluded directory."""
        if self._spec is None:
            return list(entries)
        out: list[FileEntry] = []
        skipped: list[str] = []
        for e in sorted(entries, key=lambda e: e.path.split("/")):
            if any(e.path.startswith(s + "/") for s in skipped):
                continue
            if self.excluded(os.fsencode(e.path), e.type == "dir"):
                if e.type == "dir":
                    skipped.append(e.path)
                continue
            out.append(e)
        return out


def scan_host(root: str, excluder: Excluder) -> ScanNode:
    """Walk a host directory through directory fds, never following a symlink."""
    root_b = os.fsencode(root)
    root_fd = os.open(root_b, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(root_fd)
        top = ScanNode(b"", "dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns, children={})
        stack = [top]
        while stack:
            node = stack.pop()
            assert node.children is not None
            try:
                fd = open_dir_nofollow(root_fd, node.path.split(b"/") if node.path else [])
            except FileNotFoundError:
                raise SourceChanged(os.fsdecode(node.path), "the directory disappeared") from None
            except OSError:
                raise SourceChanged(os.fsdecode(node.path), "a directory was replaced") from None
            try:
                _scan_dir(fd, node, stack, excluder)
            finally:
                os.close(fd)
        return top
    finally:
        os.close(root_fd)


def _scan_dir(fd: int, node: ScanNode, stack: list[ScanNode], excluder: Excluder) -> None:
    assert node.children is not None
    with os.scandir(fd) as it:
        for entry in it:
            name = os.fsencode(entry.name)
            rel = node.path + b"/" + name if node.path else name
            try:
                est = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted while we looked: not part of this snapshot
            kind = entry_type(est.st_mode)
            if kind == "other":
                log.warning("skipping %r: not a file, directory or symlink", os.fsdecode(rel))
                continue
            if excluder and excluder.excluded(rel, kind == "dir"):
                continue
            child = ScanNode(name, kind, stat.S_IMODE(est.st_mode), est.st_mtime_ns, path=rel)
            if kind == "file":
                child.size = est.st_size
                child.ino = (est.st_dev, est.st_ino)
            elif kind == "symlink":
                try:
                    child.target = os.readlink(name, dir_fd=fd)
                except OSError:
                    continue
            else:
                child.children = {}
                stack.append(child)
            node.children[name] = child


def scan_entries(entries: Sequence[FileEntry], excluder: Excluder) -> ScanNode:
    """Build the scan tree from a sandbox's ``list_tree`` output."""
    top = ScanNode(b"", "dir", 0o755, 0, children={})
    dirs: dict[bytes, ScanNode] = {b"": top}
    for e in sorted(excluder.kept(entries), key=lambda e: os.fsencode(e.path)):
        rel = os.fsencode(e.path)
        if e.type == "other":
            continue
        parent_path, _, name = rel.rpartition(b"/")
        parent = dirs.get(parent_path)
        if parent is None or parent.children is None:
            raise SourceChanged(e.path, "its parent directory is not in the listing")
        node = ScanNode(name, e.type, e.mode & 0o7777, round(e.mtime * 1e9), path=rel)
        if e.type == "file":
            node.size = e.size
        elif e.type == "symlink":
            node.target = os.fsencode(e.link_target or "")
        else:
            node.children = {}
            dirs[rel] = node
        parent.children[name] = node
    return top


def plan(repo: Repo, top: ScanNode, parent_tree: bytes | None) -> list[ScanNode]:
    """Reuse the parent's chunks for unchanged files; return the files that must be read."""
    todo: list[ScanNode] = []
    blobs = repo.index.blobs
    stack: list[tuple[ScanNode, bytes | None]] = [(top, parent_tree)]
    while stack:
        node, tid = stack.pop()
        before: dict[bytes, Node] = {}
        if tid is not None:
            try:
                before = {n.name: n for n in repo.tree(tid)}
                node.old_tree, node.old = tid, before
            except MissingObject:
                log.warning("parent tree %s is gone; reading the directory again", tid.hex())
        assert node.children is not None
        for child in node.children.values():
            old = before.get(child.name)
            if child.type == "file":
                if (
                    old is not None
                    and old.type == "file"
                    and old.size == child.size
                    and abs(old.mtime_ns - child.mtime_ns) <= 1000
                    and old.chunks is not None
                    and all(c in blobs for c in old.chunks)
                ):
                    child.chunks = old.chunks
                    child.mtime_ns = old.mtime_ns  # equal within float rounding
                else:
                    todo.append(child)
            elif child.type == "dir":
                stack.append((child, old.tree if old is not None and old.type == "dir" else None))
    return todo


class _Prefixed:
    """A readinto-able file that first returns ``head`` and then reads ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes] | Any) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readinto(self, target: Any) -> int:
        if self._head:
            n = min(len(target), len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if hasattr(self._rest, "readinto"):
            return int(self._rest.readinto(target) or 0)
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


_cdc_local = threading.local()


def _cdc() -> FastCDC:
    c = getattr(_cdc_local, "cdc", None)
    if c is None:
        c = _cdc_local.cdc = FastCDC(CDC_AVG, min_size=CDC_MIN, max_size=CDC_MAX)
    return c


def _read_upto(fh: Any, n: int) -> bytes:
    parts = []
    while n > 0:
        data = fh.read(n)
        if not data:
            break
        parts.append(data)
        n -= len(data)
    return b"".join(parts)


def chunk_stream(fh: Any, writer: PackWriter, report: ReadReport | None) -> tuple[list[bytes], int]:
    """Cut a file object into chunks and store the new ones; returns (chunk ids, size)."""
    codec = writer.repo.codec
    head = _read_upto(fh, SMALL_FILE + 1)
    if len(head) <= SMALL_FILE:
        blob_id = codec.blob_id(head)
        writer.add(blob_id, KIND_CHUNK, head)
        if report:
            report(len(head))
        return [blob_id], len(head)
    ids: list[bytes] = []
    size = 0
    compressible: bool | None = None
    for chunk in _cdc().cut_stream(_Prefixed(head, fh)):
        data = chunk.data
        blob_id = codec.blob_id(data)
        if not writer.known(blob_id):
            if compressible is None:
                compressible = _compressible(data)
            writer.add(blob_id, KIND_CHUNK, data, compressible)
        ids.append(blob_id)
        size += chunk.length
        if report:
            report(chunk.length)
    return ids, size


def _compressible(data: memoryview) -> bool:
    """A cheap probe: does zstd shrink a 64 KiB sample of the first chunk by 3% or more?"""
    from sandbank.snapshots._format import compress

    sample = data[: 64 * 1024]
    return len(compress(sample)) < len(sample) * 0.97 or not any(sample[:4096])


def read_host_files(
    root: str, nodes: list[ScanNode], writer: PackWriter, report: ReadReport | None, workers: int
) -> None:
    """Read changed files straight from disk, spreading the work over ``workers`` threads."""
    root_b = os.fsencode(root)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

    def one(node: ScanNode) -> None:
        path = os.path.join(root_b, node.path)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            what = "it was replaced by a symlink" if exc.errno == errno.ELOOP else exc.strerror
            raise SourceChanged(os.fsdecode(node.path), f"cannot open it: {what}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceChanged(os.fsdecode(node.path), "it is no longer a regular file")
            if node.ino is not None and (st.st_dev, st.st_ino) != node.ino:
                raise SourceChanged(os.fsdecode(node.path), "it was replaced by another file")
            if st.st_size <= SMALL_FILE:
                data = os.read(fd, SMALL_FILE + 1)
                if len(data) <= SMALL_FILE:
                    blob_id = writer.repo.codec.blob_id(data)
                    writer.add(blob_id, KIND_CHUNK, data)
                    node.chunks, node.size = [blob_id], len(data)
                    if report:
                        report(len(data))
                    return
                os.lseek(fd, 0, os.SEEK_SET)
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as fh:
                node.chunks, node.size = chunk_stream(fh, writer, report)
        finally:
            os.close(fd)

    def batch(group: list[ScanNode]) -> None:
        for node in group:
            one(node)

    groups: list[list[ScanNode]] = []
    current: list[ScanNode] = []
    current_bytes = 0
    for node in nodes:
        if node.size > SMALL_FILE:
            groups.append([node])
            continue
        current.append(node)
        current_bytes += node.size
        if len(current) >= 256 or current_bytes >= 4 * 1024 * 1024:
            groups.append(current)
            current, current_bytes = [], 0
    if current:
        groups.append(current)
    if workers <= 1 or len(groups) <= 1:
        for g in groups:
            batch(g)
        return
    # Big files first so they do not straggle at the end.
    groups.sort(key=lambda g: -sum(n.size for n in g))
    with ThreadPoolExecutor(workers, thread_name_prefix="sandbank-read") as pool:
        for f in [pool.submit(batch, g) for g in groups]:
            f.result()


TAR_IN_FLIGHT = 64 * 1024 * 1024
"""At most this many bytes of a tar stream wait for, or are in, the workers of ``read_tar``."""
_BATCH_FILES = 256
_BATCH_BYTES = 4 * 1024 * 1024


class _BoundedPool:
    """A thread pool whose ``submit`` waits while ``limit`` bytes are queued or being worked on.

    With ``workers <= 1`` every job runs in the submitting thread. The first failure of a job
    is raised by the next ``submit``, so the submitter stops early.
    """

    def __init__(self, workers: int, limit: int) -> None:
        self._pool = (
            ThreadPoolExecutor(workers, thread_name_prefix="sandbank-ingest")
            if workers > 1
            else None
        )
        self._limit = limit
        self._held = 0
        self._cond = threading.Condition()
        self._failed: BaseException | None = None

    def submit(self, nbytes: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is None:
            future: Future[T] = Future()
            future.set_result(fn(*args))
            return future
        with self._cond:
            while self._held and self._held + nbytes > self._limit and self._failed is None:
                self._cond.wait()
            if self._failed is not None:
                raise self._failed
            self._held += nbytes
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._done(nbytes, None)
            raise
        future.add_done_callback(lambda f: self._done(nbytes, f))
        return future

    def _done(self, nbytes: int, future: Future[Any] | None) -> None:
        with self._cond:
            self._held -= nbytes
            if future is not None and not future.cancelled() and self._failed is None:
                self._failed = future.exception()
            self._cond.notify_all()

    def shutdown(self, cancel: bool) -> None:
        """Wait for the running jobs (and, unless ``cancel``, the queued ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)


def _batch_member(future: Future[list[bytes]], i: int, size: int) -> tuple[list[bytes], int]:
    return [future.result()[i]], size


def _linked(src: ScanNode) -> tuple[list[bytes], int]:
    assert src.chunks is not None  # set before: steps resolve in archive order
    return src.chunks, src.size


def read_tar(
    fileobj: Any,
    nodes: list[ScanNode],
    writer: PackWriter,
    report: ReadReport | None,
    workers: int = 1,
) -> None:
    """Read the wanted files out of a sandbox's tar stream, checking every member.

    This thread parses the stream (in order: every member goes through ``TarGuard``) and
    cuts big files; hashing and storing (``writer.add``: compression, packing) run on
    ``workers`` threads, with at most ``TAR_IN_FLIGHT`` bytes handed over and not done.
    Small files go in batches. Each file's chunk ids are set once every job is done, in
    archive order, so a hard link copies the chunks of the member it names as they were.
    Whether a big file's chunks are compressed is probed on its first chunk (the
    sequential ``chunk_stream`` probes its first new one).
    """
    codec = writer.repo.codec
    wanted = {n.path: n for n in nodes}
    seen: dict[bytes, ScanNode] = {}
    guard = TarGuard()
    pool = _BoundedPool(workers, TAR_IN_FLIGHT)
    # (node, how to get its (chunk ids, size)) in archive order, resolved after the workers.
    steps: list[tuple[ScanNode, Callable[[], tuple[list[bytes], int]]]] = []
    batch: list[bytes] = []
    batch_nodes: list[ScanNode] = []
    batch_bytes = 0

    def store_small(datas: list[bytes]) -> list[bytes]:
        ids = []
        for data in datas:
            blob_id = codec.blob_id(data)
            writer.add(blob_id, KIND_CHUNK, data)
            ids.append(blob_id)
        if report:
            report(sum(len(d) for d in datas))
        return ids

    def store_chunk(data: bytes, compressible: bool) -> bytes:
        blob_id = codec.blob_id(data)
        if not writer.known(blob_id):
            writer.add(blob_id, KIND_CHUNK, data, compressible)
        if report:
            report(len(data))
        return blob_id

    def flush() -> None:
        nonlocal batch, batch_nodes, batch_bytes
        if not batch:
            return
        future = pool.submit(batch_bytes, store_small, batch)
        for i, (n, data) in enumerate(zip(batch_nodes, batch, strict=True)):
            steps.append((n, functools.partial(_batch_member, future, i, len(data))))
        batch, batch_nodes, batch_bytes = [], [], 0

    def big(fh: Any) -> Callable[[], tuple[list[bytes], int]]:
        futures: list[Future[bytes]] = []
        size = 0
        compressible = True
        for chunk in _cdc().cut_stream(fh):
            data = bytes(chunk.data)  # the chunker reuses its buffer
            if not futures:  # probed here, in order, so the result does not vary run to run
                compressible = _compressible(memoryview(data))
            futures.append(pool.submit(len(data), store_chunk, data, compressible))
            size += len(data)
        return lambda: ([f.result() for f in futures], size)

    ok = False
    try:
        tar = TarReader(fileobj)
        for member in tar:
            rel = guard.check(member)  # WorkspacePathError for ../, absolute, bad links
            key = os.fsencode(rel)
            node = wanted.get(key)
            if node is None:
                continue
            if member.isreg():
                if member.size <= SMALL_FILE:
                    data = tar.read()
                    batch.append(data)
                    batch_nodes.append(node)
                    batch_bytes += len(data)
                    if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                        flush()
                else:
                    flush()  # keeps steps in archive order (a later duplicate wins)
                    steps.append((node, big(tar)))
                seen[key] = node
            elif member.islnk():
                src = seen.get(os.fsencode(member_path(member.linkname)))
                if src is None:
                    raise SourceChanged(rel, "a hard link to a file that was not exported")
                flush()  # the source may wait in the batch
                steps.append((node, functools.partial(_linked, src)))
                seen[key] = node
            else:
                raise SourceChanged(
                    rel, "it was a file when listed but is not a file in the export"
                )
        flush()
        for key in wanted.keys() - seen.keys():
            raise SourceChanged(os.fsdecode(key), "it was listed but is missing from the export")
        ok = True
    finally:
        pool.shutdown(cancel=not ok)
    for node, result in steps:  # in archive order: a link's source is set before the link
        node.chunks, node.size = result()


def _unchanged(node: ScanNode, ids: dict[int, bytes]) -> bool:
    """Whether a scanned directory serializes exactly like its parent-snapshot tree."""
    old = node.old
    assert node.children is not None
    if old is None or len(old) != len(node.children):
        return False
    for c in node.children.values():
        o = old.get(c.name)
        if o is None or o.type != c.type or o.mode != c.mode or o.mtime_ns != c.mtime_ns:
            return False
        if c.type == "file":
            if c.chunks is not o.chunks or c.size != o.size:
                return False
        elif c.type == "dir":
            if ids[id(c)] != o.tree:
                return False
        elif c.target != o.target:
            return False
    return True


def build_trees(top: ScanNode, writer: PackWriter, result: IngestResult) -> bytes:
    """Serialize directories bottom-up, store new ones, and return the root tree id."""
    repo = writer.repo
    codec = repo.codec
    order: list[ScanNode] = []
    stack = [top]
    while stack:
        node = stack.pop()
        order.append(node)
        assert node.children is not None
        stack.extend(c for c in node.children.values() if c.type == "dir")
    ids: dict[int, bytes] = {}
    referenced = result.referenced
    for node in reversed(order):
        assert node.children is not None
        for c in node.children.values():
            if c.type == "dir":
                result.dirs += 1
            elif c.type == "file":
                if c.chunks is None:
                    raise SourceChanged(os.fsdecode(c.path), "it was not read")
                result.files += 1
                result.logical_bytes += c.size
                referenced.update(c.chunks)
            else:
                result.symlinks += 1
        if node.old_tree is not None and _unchanged(node, ids):
            tid = node.old_tree
            plain = repo.plain_tree(tid)
            if plain is not None:
                result.trees[tid] = plain
            else:
                result.bundle_complete = False
        else:
            entries = []
            for c in node.children.values():
                if c.type == "dir":
                    entries.append(Node(c.name, "dir", c.mode, c.mtime_ns, tree=ids[id(c)]))
                elif c.type == "file":
                    entries.append(
                        Node(c.name, "file", c.mode, c.mtime_ns, c.size, chunks=c.chunks)
                    )
                else:
                    entries.append(Node(c.name, "symlink", c.mode, c.mtime_ns, target=c.target))
            data = encode_tree(entries)
            tid = codec.blob_id(data)
            writer.add(tid, KIND_TREE, data)
            result.trees[tid] = data
            repo.remember_tree(tid, sorted(entries, key=lambda n: n.name), data)
        referenced.add(tid)
        ids[id(node)] = tid
    return ids[id(top)]


def now_ns() -> int:
    return time.time_ns()

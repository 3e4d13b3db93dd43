"""The blocking core of a store: config, pack indexes, tree loading, pack writing, blob reads.

Everything here runs in worker threads; ``store.py`` wraps it in the async API.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3

from sandbank.snapshots._backend import Backend
from sandbank.snapshots._format import (
    KIND_CHUNK,
    KIND_TREE,
    PACK_TARGET,
    TRAILER_SIZE,
    BlobLoc,
    Codec,
    Node,
    decode_index,
    decode_tree,
    encode_index,
    new_pack_id,
    pack_trailer,
    trailer_length,
)
from sandbank.snapshots.errors import CorruptObject, MissingObject, StoreUnavailable

log = logging.getLogger("sandbank.snapshots")

NO_EMBEDDED_INDEX = (
    "it does not end with a copy of its index (written before packs carried one, or cut short)"
)

Progress = Callable[[str, int, "int | None"], None]


class Index:
    """Where every blob lives: blob id -> BlobLoc, and pack -> its entries."""

    def __init__(self) -> None:
        self.blobs: dict[bytes, BlobLoc] = {}
        self.packs: dict[str, list[tuple[bytes, BlobLoc]]] = {}

    def add_pack(self, pack: str, entries: list[tuple[bytes, BlobLoc]]) -> None:
        for blob_id, loc in entries:
            self.blobs.setdefault(blob_id, loc)
        self.packs[pack] = entries

    def drop_pack(self, pack: str) -> None:
        lost = False
        for blob_id, _loc in self.packs.pop(pack, ()):
            loc = self.blobs.get(blob_id)
            if loc is not None and loc.pack == pack:
                del self.blobs[blob_id]
                lost = True
        if lost:  # another pack may hold the same blob (two writers raced): re-point
            for entries in self.packs.values():
                for blob_id, loc in entries:
                    self.blobs.setdefault(blob_id, loc)


class Repo:
    """One open store: backend, codec and caches."""

    def __init__(
        self, backend: Backend, codec: Codec, config: dict[str, Any], cache_dir: Path | None
    ):
        self.backend = backend
        self.codec = codec
        self.config = config
        self.cache_dir = cache_dir
        self.index = Index()
        self.damaged_indexes: dict[str, str] = {}
        """Packs whose index object fails its check, and why (left out of ``index``)."""
        self._index_lock = threading.Lock()
        self._trees: dict[bytes, list[Node]] = {}
        self._plain: dict[bytes, bytes] = {}
        self._tree_lock = threading.Lock()
        self._pack_fds: dict[str, int] = {}
        self._fd_lock = threading.Lock()

    # -- index ------------------------------------------------------------------------------

    def _cache_file(self, *parts: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir.joinpath(*parts)

    def refresh_index(self, use_cache: bool = True) -> Index:
        """Bring the in-memory index in line with the store's ``index/`` objects."""
        with self._index_lock:
            names = set(self.backend.list("index"))
            for gone in set(self.index.packs) - names:
                self.index.drop_pack(gone)
                cached = self._cache_file("index", gone)
                if cached is not None:
                    cached.unlink(missing_ok=True)
            todo = sorted(names - set(self.index.packs))
            fetch: list[str] = []
            raw: dict[str, bytes] = {}
            for pack in todo:
                cached = self._cache_file("index", pack)
                if use_cache and cached is not None and cached.is_file():
                    raw[pack] = cached.read_bytes()
                else:
                    fetch.append(pack)
            if fetch:
                got = self.backend.get_many([f"index/{p}" for p in fetch])
                for pack in fetch:
                    value = got[f"index/{pack}"]
                    if isinstance(value, MissingObject):
                        continue  # deleted by gc between list and read
                    if isinstance(value, Exception):
                        raise value
                    raw[pack] = value
            for pack, data in raw.items():
                entries = self._read_index(pack, data, from_cache=pack not in fetch)
                if entries is not None:
                    self.index.add_pack(pack, entries)
            for pack in set(self.damaged_indexes) - names:
                del self.damaged_indexes[pack]
            return self.index

    def _read_index(
        self, pack: str, data: bytes, from_cache: bool
    ) -> list[tuple[bytes, BlobLoc]] | None:
        """An index's entries; None (noted in ``damaged_indexes``) when the store's is damaged.

        A damaged index leaves the rest of the store usable: its blobs are missing until
        ``verify(repair=True)`` rebuilds it, and gc keeps its pack.
        """
        name = f"index/{pack}"
        try:
            entries = self.open_index(pack, data)
        except CorruptObject as exc:
            if from_cache:  # a damaged cache entry: read the real one
                cached = self._cache_file("index", pack)
                if cached is not None:
                    cached.unlink(missing_ok=True)
                try:
                    return self._read_index(pack, self.backend.get(name), from_cache=False)
                except MissingObject:
                    return None  # deleted by gc meanwhile
            if pack not in self.damaged_indexes:
                log.warning("%s is damaged (%s): run `sandbank snapshot verify`", name, exc.detail)
            self.damaged_indexes[pack] = exc.detail
            return None
        self.damaged_indexes.pop(pack, None)
        if not from_cache:
            self._cache_write(("index", pack), data)
        return entries

    def put_index(self, pack: str, data: bytes) -> None:
        """Write ``index/<pack>`` (and its host cache copy)."""
        self.backend.put(f"index/{pack}", data)
        self._cache_write(("index", pack), data)

    def open_index(self, pack: str, data: bytes) -> list[tuple[bytes, BlobLoc]]:
        """The entries of an index object (``index/<pack>`` or a pack's embedded copy)."""
        name = f"index/{pack}"
        return decode_index(self.codec.open_meta(data, name), pack, name)

    def embedded_index(self, pack: str, size: int) -> tuple[bytes, list[tuple[bytes, BlobLoc]]]:
        """The copy of its index a pack of ``size`` bytes ends with: (index object, entries).

        Two small range reads. CorruptObject names the pack when it has no intact copy.
        """
        name = f"packs/{pack}"
        tail = self.backend.get_range(name, max(0, size - TRAILER_SIZE), size)
        length = trailer_length(tail)
        if length is None or length > size - TRAILER_SIZE:
            raise CorruptObject(name, NO_EMBEDDED_INDEX)
        data = self.backend.get_range(name, size - TRAILER_SIZE - length, size - TRAILER_SIZE)
        try:
            return data, self.open_index(pack, data)
        except CorruptObject as exc:
            raise CorruptObject(name, f"its copy of the index is damaged ({exc.detail})") from None

    def _cache_write(self, parts: tuple[str, ...], data: bytes) -> None:
        path = self._cache_file(*parts)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # the cache is an optimization only
            log.debug("cannot write cache %s: %s", path, exc)

    # -- reading blobs ----------------------------------------------------------------------

    def _pack_fd(self, pack: str, path: str) -> int:
        with self._fd_lock:
            fd = self._pack_fds.get(pack)
            if fd is None:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise MissingObject(f"packs/{pack}") from None
                self._pack_fds[pack] = fd
            return fd

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._pack_fds.values():
                os.close(fd)
            self._pack_fds.clear()

    def forget_pack_fds(self) -> None:
        self.close()

    def loc(self, blob_id: bytes) -> BlobLoc:
        loc = self.index.blobs.get(blob_id)
        if loc is None:
            why = "its pack was deleted or lost"
            if self.damaged_indexes:
                pack, detail = next(iter(sorted(self.damaged_indexes.items())))
                why = f"it may be in packs/{pack}, whose index is damaged ({detail})"
            raise MissingObject(f"blob {blob_id.hex()}", f"no pack index lists it ({why})")
        return loc

    def read_stored(self, loc: BlobLoc) -> bytes:
        name = f"packs/{loc.pack}"
        local = self.backend.local_path(name)
        if local is not None:
            data = os.pread(self._pack_fd(loc.pack, local), loc.length, loc.offset)
        else:
            data = self.backend.get_range(name, loc.offset, loc.offset + loc.length)
        if len(data) != loc.length:
            raise CorruptObject(name, f"is truncated (blob at offset {loc.offset} is cut short)")
        return data

    def read_blob(self, blob_id: bytes) -> bytes:
        loc = self.loc(blob_id)
        return self.codec.decode_blob(
            blob_id, self.read_stored(loc), loc.flags, loc.raw_length, f"packs/{loc.pack}"
        )

    def read_many_stored(self, ids: list[bytes]) -> dict[bytes, bytes]:
        """Stored bytes of many blobs, fetched together (one request batch on remote stores)."""
        locs = [(b, self.loc(b)) for b in ids]
        if self.backend.local:
            return {b: self.read_stored(loc) for b, loc in locs}
        paths = [self.backend.path(f"packs/{loc.pack}") for _, loc in locs]
        starts = [loc.offset for _, loc in locs]
        ends = [loc.offset + loc.length for _, loc in locs]
        try:
            datas = self.backend._call(
                "reading blobs",
                lambda: self.backend.fs.cat_ranges(paths, starts, ends, on_error="return"),
            )
        except TypeError:
            datas = self.backend._call(
                "reading blobs", lambda: self.backend.fs.cat_ranges(paths, starts, ends)
            )
        out = {}
        for (b, loc), data in zip(locs, datas, strict=True):
            if isinstance(data, FileNotFoundError):
                raise MissingObject(f"packs/{loc.pack}")
            if isinstance(data, Exception):
                raise StoreUnavailable(self.backend.url, f"reading packs/{loc.pack} failed: {data}")
            if len(data) != loc.length:
                raise CorruptObject(f"packs/{loc.pack}", f"is truncated at offset {loc.offset}")
            out[b] = bytes(data)
        return out

    # -- trees ------------------------------------------------------------------------------

    def tree(self, tree_id: bytes) -> list[Node]:
        with self._tree_lock:
            nodes = self._trees.get(tree_id)
        if nodes is None:
            self.load_trees([tree_id], recursive=False)
            nodes = self._trees[tree_id]
        return nodes

    def load_trees(self, roots: Iterable[bytes], recursive: bool = True) -> dict[bytes, list[Node]]:
        """Load trees (and, recursively, their subtrees) into memory, level by level."""
        frontier = list(dict.fromkeys(roots))
        result: dict[bytes, list[Node]] = {}
        bundle = self._read_bundle(frontier[0]) if len(frontier) == 1 and recursive else {}
        while frontier:
            missing = [t for t in frontier if t not in self._trees]
            remote = []
            for t in missing:
                plain = bundle.get(t)
                if plain is not None and self.codec.blob_id(plain) == t:
                    self.remember_tree(t, decode_tree(plain, f"tree {t.hex()}"), plain)
                else:
                    remote.append(t)
            if remote:
                for t, data in self.read_many_stored(remote).items():
                    loc = self.loc(t)
                    plain = self.codec.decode_blob(
                        t, data, loc.flags, loc.raw_length, f"packs/{loc.pack}"
                    )
                    self.remember_tree(t, decode_tree(plain, f"tree {t.hex()}"), plain)
            nxt: list[bytes] = []
            for t in frontier:
                nodes = self._trees[t]
                result[t] = nodes
                if recursive:
                    nxt.extend(
                        n.tree for n in nodes if n.type == "dir" and n.tree and n.tree not in result
                    )
            frontier = list(dict.fromkeys(nxt))
        if len(self._trees) > 200_000:
            with self._tree_lock:
                self._trees.clear()
                self._plain.clear()
        return result

    def remember_tree(self, tree_id: bytes, nodes: list[Node], plain: bytes | None = None) -> None:
        with self._tree_lock:
            self._trees[tree_id] = nodes
            if plain is not None:
                self._plain[tree_id] = plain

    def plain_tree(self, tree_id: bytes) -> bytes | None:
        return self._plain.get(tree_id)

    def write_bundle(self, root: bytes, trees: dict[bytes, bytes]) -> None:
        """Cache a snapshot's trees (plaintext, sealed like an index) in one host file."""
        if self.cache_dir is None:
            return
        out = bytearray()
        for t, plain in trees.items():
            out += t + len(plain).to_bytes(4, "little") + plain
        name = f"trees/{root.hex()}"
        self._cache_write(("trees", root.hex()), self.codec.seal_meta(bytes(out), name))

    def _read_bundle(self, root: bytes) -> dict[bytes, bytes]:
        path = self._cache_file("trees", root.hex())
        if path is None or not path.is_file():
            return {}
        try:
            data = self.codec.open_meta(path.read_bytes(), f"trees/{root.hex()}")
        except (OSError, CorruptObject):
            return {}
        out: dict[bytes, bytes] = {}
        pos = 0
        while pos + 36 <= len(data):
            n = int.from_bytes(data[pos + 32 : pos + 36], "little")
            out[data[pos : pos + 32]] = data[pos + 36 : pos + 36 + n]
            pos += 36 + n
        return out

    def walk(self, root: bytes) -> list[tuple[bytes, Node]]:
        """Every entry of a snapshot as (relative path bytes, node), parents first."""
        trees = self.load_trees([root])
        out: list[tuple[bytes, Node]] = []
        stack: list[tuple[bytes, bytes]] = [(b"", root)]
        while stack:
            prefix, tid = stack.pop()
            for node in trees[tid]:
                path = prefix + node.name
                out.append((path, node))
                if node.type == "dir" and node.tree:
                    stack.append((path + b"/", node.tree))
        return out

    def reachable(self, root: bytes) -> set[bytes]:
        """Every blob id (trees and chunks) a snapshot references."""
        trees = self.load_trees([root])
        ids = set(trees)
        for nodes in trees.values():
            for n in nodes:
                if n.chunks:
                    ids.update(n.chunks)
        return ids


class PackWriter:
    """Thread-safe: dedupes blobs, packs them, uploads full packs in the background."""

    def __init__(self, repo: Repo, upload_workers: int = 4, in_flight: int = 3) -> None:
        self.repo = repo
        self._lock = threading.Lock()
        self._claimed: set[bytes] = set()
        self._buf = bytearray()
        self._entries: list[tuple[bytes, int, int, int, int, int]] = []
        self._pool = ThreadPoolExecutor(upload_workers, thread_name_prefix="sandbank-upload")
        self._slots = threading.Semaphore(in_flight)
        self._futures: list[Future[None]] = []
        self.new: dict[bytes, BlobLoc] = {}
        self.objects = 0
        self.bytes = 0
        self.packs: list[str] = []
        self._stats_lock = threading.Lock()

    def known(self, blob_id: bytes) -> bool:
        return blob_id in self._claimed or blob_id in self.repo.index.blobs

    def add(
        self, blob_id: bytes, kind: int, data: bytes | memoryview, compressible: bool = True
    ) -> bool:
        """Store a blob unless the store (or this writer) has it. True if it is new."""
        with self._lock:
            if blob_id in self._claimed or blob_id in self.repo.index.blobs:
                return False
            self._claimed.add(blob_id)
        stored, flags = self.repo.codec.encode_blob(blob_id, data, compressible)
        full = None
        with self._lock:
            self._entries.append((blob_id, kind, flags, len(self._buf), len(stored), len(data)))
            self._buf += stored
            if len(self._buf) >= PACK_TARGET:
                full = self._rotate()
        if full is not None:
            self._submit(*full)
        return True

    def _rotate(self) -> tuple[str, bytearray, list[tuple[bytes, int, int, int, int, int]]]:
        pack, buf, entries = new_pack_id(), self._buf, self._entries
        self._buf, self._entries = bytearray(), []
        return pack, buf, entries

    def _submit(
        self, pack: str, buf: bytearray, entries: list[tuple[bytes, int, int, int, int, int]]
    ) -> None:
        self._slots.acquire()
        future = self._pool.submit(self._upload, pack, buf, entries)
        future.add_done_callback(lambda _f: self._slots.release())
        with self._lock:
            self._futures.append(future)

    def _upload(
        self, pack: str, buf: bytearray, entries: list[tuple[bytes, int, int, int, int, int]]
    ) -> None:
        backend, codec = self.repo.backend, self.repo.codec
        index = codec.seal_meta(encode_index(entries), f"index/{pack}")
        buf += pack_trailer(index)  # the pack describes itself: a lost index can be rebuilt
        data = bytes(buf)
        buf.clear()  # one copy of the pack in memory while it uploads
        backend.put(f"packs/{pack}", data)
        self.repo.put_index(pack, index)
        with self._stats_lock:
            self.objects += 2
            self.bytes += len(data) + len(index)
            self.packs.append(pack)
            for blob_id, kind, flags, offset, length, raw in entries:
                self.new[blob_id] = BlobLoc(pack, offset, length, raw, kind, flags)
        log.debug("uploaded pack %s (%d blobs, %d bytes)", pack, len(entries), len(data))

    def finish(self) -> None:
        """Upload the last pack and wait for every upload; raise the first failure."""
        with self._lock:
            last = self._rotate() if self._entries else None
        if last is not None:
            self._submit(*last)
        try:
            for future in list(self._futures):
                future.result()
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True)

    def publish(self) -> None:
        """Make the written packs visible in the repo's in-memory index."""
        with self.repo._index_lock:
            by_pack: dict[str, list[tuple[bytes, BlobLoc]]] = {}
            for blob_id, loc in self.new.items():
                by_pack.setdefault(loc.pack, []).append((blob_id, loc))
            for pack, entries in by_pack.items():
                self.repo.index.add_pack(pack, entries)


def spool_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="sandbank-restore-")


def zero_id(codec: Codec, length: int, _cache: dict[tuple[int, int], bytes] = {}) -> bytes:  # noqa: B006
    key = (id(codec), length)
    value = _cache.get(key)
    if value is None:
        value = _cache[key] = codec.blob_id(bytes(length))
    return value


def now() -> float:
    return time.time()


def json_dumps(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode()


def digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


__all__ = ["KIND_CHUNK", "KIND_TREE", "Index", "PackWriter", "Progress", "Repo"]

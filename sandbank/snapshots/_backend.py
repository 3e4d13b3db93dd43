"""Blocking object access over fsspec, with errors mapped to snapshot errors.

Every method blocks; the store calls them from worker threads. Object names are
'/'-separated and relative to the store root (``packs/<id>``, ``snapshots/<id>.json``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from sandbank.errors import SnapshotError
from sandbank.snapshots.errors import (
    CorruptObject,
    MissingObject,
    StoreNotFound,
    StoreUnavailable,
)

log = logging.getLogger("sandbank.snapshots")
T = TypeVar("T")


class Backend:
    """One store location: an fsspec filesystem and a root path in it."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        options = dict(storage_options or {})
        if url.split("://", 1)[0] in ("s3", "s3a"):
            # botocore's legacy retries back off for up to ~15 s on a dead endpoint: fail
            # within a few seconds instead (the caller may override both).
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("connect_timeout", 5)
            config.setdefault("retries", {"max_attempts": 3, "mode": "standard"})
            options["config_kwargs"] = config
        try:
            fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError) as exc:
            raise StoreUnavailable(url, f"cannot open this URL with fsspec ({exc})") from None
        self.fs = fs
        self.root = root.rstrip("/") if root not in ("/", "") else root
        self.local = isinstance(fs, LocalFileSystem)
        self.object_store = not self.local and not isinstance(fs, MemoryFileSystem)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.root else name

    def local_path(self, name: str) -> str | None:
        """The object's file on this host, for a file:// store."""
        return self.path(name) if self.local else None

    def _call(self, what: str, fn: Callable[[], T], name: str | None = None) -> T:
        try:
            return fn()
        except SnapshotError:
            raise
        except FileNotFoundError:
            if name is None:
                raise StoreNotFound(self.url) from None
            raise MissingObject(name) from None
        except PermissionError as exc:
            raise StoreUnavailable(self.url, f"{what} was refused: {exc}") from None
        except Exception as exc:
            if _is_missing_bucket(exc):
                raise StoreNotFound(self.url, "the bucket or container does not exist") from None
            raise StoreUnavailable(
                self.url, f"{what} failed: {type(exc).__name__}: {exc}"
            ) from None

    def exists(self, name: str) -> bool:
        return self._call(f"checking {name}", lambda: bool(self.fs.exists(self.path(name))))

    def root_exists(self) -> bool:
        if not self.root:
            return True
        return self._call("checking the store location", lambda: bool(self.fs.exists(self.root)))

    def root_entries(self) -> list[str]:
        return self.list("")

    def check_bucket(self) -> None:
        """On an object store, StoreNotFound unless the bucket (container) exists."""
        if not self.object_store or not self.root:
            return
        bucket = self.root.split("/", 1)[0]
        if not self._call(f"checking bucket {bucket}", lambda: bool(self.fs.exists(bucket))):
            raise StoreNotFound(
                self.url,
                f"the bucket or container {bucket!r} does not exist",
                "check the URL, or create the bucket first (sandbank never creates buckets)",
            )

    def makedirs(self) -> None:
        def run() -> None:
            # Object stores have no directories, and s3fs's makedirs would create a bucket.
            if self.root and not self.object_store:
                self.fs.makedirs(self.root, exist_ok=True)

        self._call("creating the store location", run)

    def put(self, name: str, data: bytes) -> None:
        """Write a whole object; on a local disk through a temporary name and a rename."""
        path = self.path(name)
        if self.local:

            def run_local() -> None:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}.tmp-{secrets.token_hex(4)}"
                with open(tmp, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)

            self._call(f"writing {name}", run_local, name)
        else:
            self._call(f"writing {name}", lambda: self.fs.pipe_file(path, data), name)

    def get(self, name: str) -> bytes:
        return self._call(f"reading {name}", lambda: bytes(self.fs.cat_file(self.path(name))), name)

    def get_many(self, names: list[str]) -> dict[str, bytes | Exception]:
        """Read many small objects at once (concurrently on async filesystems)."""
        if not names:
            return {}
        paths = [self.path(n) for n in names]
        result = self._call("reading objects", lambda: self.fs.cat(paths, on_error="return"))
        out: dict[str, bytes | Exception] = {}
        for name, path in zip(names, paths, strict=True):
            value = (
                result.get(path, FileNotFoundError(path)) if isinstance(result, dict) else result
            )
            if isinstance(value, FileNotFoundError):
                out[name] = MissingObject(name)
            elif isinstance(value, Exception):
                out[name] = StoreUnavailable(self.url, f"reading {name} failed: {value}")
            else:
                out[name] = bytes(value)
        return out

    def get_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` up to ``end`` (exclusive) of an object."""
        if end <= start:
            return b""  # fsspec reads an empty range (end=0) as "to the end"

        def run() -> bytes:
            # By keyword: s3fs's cat_file takes version_id as its second positional argument.
            return bytes(self.fs.cat_file(self.path(name), start=start, end=end))

        data = self._call(f"reading {name}", run, name)
        if len(data) != end - start:
            raise CorruptObject(
                name, f"a read of bytes {start}-{end} returned {len(data)} bytes (truncated?)"
            )
        return data

    def size(self, name: str) -> int:
        return self._call(f"sizing {name}", lambda: int(self.fs.size(self.path(name))), name)

    def list(self, prefix: str) -> list[str]:
        """Names directly under ``prefix`` (a folder), without the prefix; [] if it is absent."""
        base = self.path(prefix) if prefix else self.root

        def run() -> list[str]:
            self._forget_listing(base)
            try:
                items = self.fs.ls(base, detail=False, refresh=True)
            except FileNotFoundError:
                return []
            except TypeError:
                items = self.fs.ls(base, detail=False)
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in items]

        names = self._call(f"listing {prefix or 'the store'}", run)
        return [n for n in names if ".tmp-" not in n]

    def list_sizes(self, prefix: str) -> dict[str, int]:
        base = self.path(prefix)

        def run() -> dict[str, int]:
            self._forget_listing(base)
            try:
                items = self.fs.ls(base, detail=True)
            except FileNotFoundError:
                return {}
            return {
                str(i["name"]).rstrip("/").rsplit("/", 1)[-1]: int(i.get("size") or 0)
                for i in items
            }

        sizes = self._call(f"listing {prefix}", run)
        return {k: v for k, v in sizes.items() if ".tmp-" not in k}

    def delete(self, name: str) -> None:
        def run() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(name))

        self._call(f"deleting {name}", run, name)

    def _forget_listing(self, path: str) -> None:
        """Drop fsspec's cached listing: other writers add objects (adlfs ignores refresh=)."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)

    def invalidate(self) -> None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache()


def _is_missing_bucket(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return any(
        s in text
        for s in ("NoSuchBucket", "ContainerNotFound", "bucket does not exist", "Not Found")
    )

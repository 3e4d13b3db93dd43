"""A manifest's files and directories, read on the worker and streamed into a sandbox as tar.

Each entry becomes a ``Source``. ``resolve`` checks that it is there and fingerprints its
content (a digest, an object store's version tag, a git commit) for the setup cache key;
``fetch`` downloads what must be local first (a git clone); ``write`` (in a worker thread)
adds the entry's tar members and returns the fingerprint of what it actually wrote.
Nothing is held whole in memory: files are copied through in chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from sandbank.errors import ExecTimeout
from sandbank.manifest.contents import GitSource, WorkspaceDir, WorkspaceFile
from sandbank.manifest.errors import SourceError
from sandbank.manifest.model import Manifest
from sandbank.providers.base import ExecRequest, OutputCollector
from sandbank.providers.process import run_process

__all__ = ["Source", "resolve"]

_CHUNK = 1024 * 1024
_GIT_TIMEOUT = 900.0
_VERSION_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "content_md5", "Content-MD5")
"""Keys of an fsspec ``info()`` that name one version of an object's content."""

StorageOptions = Mapping[str, Mapping[str, Any]]
"""fsspec options by protocol (``{"s3": {"key": ..., "client_kwargs": {...}}}``), for URLs."""


class Source(ABC):
    """One ``files``/``dirs`` entry on the worker."""

    def __init__(self, where: str, target: str, mode: int | None) -> None:
        self.where = where
        """The entry's field, e.g. ``files[2]``."""
        self.target = target
        self.mode = mode
        self.fingerprint: dict[str, Any] = {}

    @abstractmethod
    async def resolve(self) -> None:
        """Check the source exists and set ``fingerprint``; ``SourceError`` if not."""

    async def fetch(self) -> None:
        """Bring the content to this host when ``write`` needs it there."""

    @abstractmethod
    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        """Add the entry's members; return the fingerprint of what was written."""

    def close(self) -> None:
        """Remove anything ``fetch`` left on this host."""


async def resolve(
    manifest: Manifest, storage_options: StorageOptions, host_roots: Sequence[str] | None = None
) -> list[Source]:
    """The manifest's entries as sources (dirs first, then files), each resolved.

    ``host_roots``: directories host paths and ``file://`` URLs must lie in (None: any).
    """
    sources: list[Source] = []
    for i, d in enumerate(manifest.dirs):
        sources.append(_dir_source(f"dirs[{i}]", d, storage_options))
    for i, f in enumerate(manifest.files):
        sources.append(_file_source(f"files[{i}]", f, storage_options))
    if host_roots is not None:
        await asyncio.to_thread(_check_host_roots, sources, host_roots)
    for source in sources:
        await source.resolve()
    return sources


def _check_host_roots(sources: list[Source], host_roots: Sequence[str]) -> None:
    roots = [os.path.realpath(r) for r in host_roots]
    for source in sources:
        if isinstance(source, _HostSource):
            field, path = f"{source.where}.host", source.path
        elif isinstance(source, _UrlSource) and urlsplit(source.url).scheme in ("file", "local"):
            field, path = source.field, urlsplit(source.url).path
        else:
            continue
        real = os.path.realpath(path)  # symlinks resolved: a link out of a root is outside
        if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
            raise SourceError(
                field,
                f"{path!r} is outside the host directories this worker allows "
                f"({', '.join(roots)}); move it there, or allow its directory on the worker",
            )


def _file_source(where: str, entry: WorkspaceFile, options: StorageOptions) -> Source:
    if entry.host is not None:
        return _HostSource(where, entry.path, entry.mode, entry.host, is_dir=False)
    if entry.url is not None:
        return _UrlSource(where, entry.path, entry.mode, entry.url, options, is_dir=False)
    data = entry.inline
    assert data is not None
    return _InlineSource(where, entry.path, entry.mode, data)


def _dir_source(where: str, entry: WorkspaceDir, options: StorageOptions) -> Source:
    if entry.host is not None:
        return _HostSource(where, entry.path, entry.mode, entry.host, is_dir=True)
    if entry.url is not None:
        return _UrlSource(where, entry.path, entry.mode, entry.url, options, is_dir=True)
    if entry.git is not None:
        return _GitSource(where, entry.path, entry.mode, entry.git)
    return _EmptyDir(where, entry.path, entry.mode)


# -- tar members ------------------------------------------------------------------------------


def _join(target: str, rel: str) -> str:
    return rel if target == "." else f"{target}/{rel}" if rel else target


def _add_dir(tar: tarfile.TarFile, name: str, mode: int, mtime: float | None = None) -> None:
    if name == ".":
        return
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime or time.time()
    tar.addfile(info)


class _Exact(io.RawIOBase):
    """Reads exactly ``size`` bytes of ``file``, hashing them; a short file is an error."""

    def __init__(self, file: IO[bytes], size: int, where: str) -> None:
        self.file, self.left, self.where = file, size, where
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.file.read(n) if n else b""
        if len(data) < n:
            raise SourceError(self.where, "changed while it was read (it got shorter); retry")
        self.left -= len(data)
        self.sha.update(data)
        return data


def _add_file(
    tar: tarfile.TarFile | None,
    name: str,
    file: IO[bytes],
    size: int,
    mode: int,
    mtime: float | None,
    where: str,
) -> str:
    """Add one file (or, without ``tar``, only read it); return its sha256."""
    reader = _Exact(file, size, where)
    if tar is None:
        while reader.read(_CHUNK):
            pass
    else:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, mode, time.time() if mtime is None else mtime
        tar.addfile(info, reader)
    return reader.sha.hexdigest()


def _host_tree(
    root: str, tar: tarfile.TarFile | None, target: str, mode: int | None, where: str
) -> dict[str, Any]:
    """Walk a host directory without following symlinks; return its content digest."""
    digest = hashlib.sha256()
    top = os.stat(root)
    top_mode = mode if mode is not None else stat.S_IMODE(top.st_mode)
    digest.update(json.dumps(["", "dir", top_mode]).encode())
    if tar is not None:
        _add_dir(tar, target, top_mode, top.st_mtime)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        with os.scandir(os.path.join(root, rel_dir)) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            name = _join(target, rel)
            st = entry.stat(follow_symlinks=False)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                digest.update(json.dumps([rel, "dir", perm]).encode())
                if tar is not None:
                    _add_dir(tar, name, perm, st.st_mtime)
                stack.append(rel)
            elif stat.S_ISLNK(st.st_mode):
                link = os.readlink(entry.path)
                digest.update(json.dumps([rel, "symlink", link]).encode())
                if tar is not None:
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, link, st.st_mtime
                    tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with open(fd, "rb") as file:
                    fst = os.fstat(fd)
                    sha = _add_file(
                        tar, name, file, fst.st_size, perm, fst.st_mtime, f"{where} ({rel})"
                    )
                digest.update(json.dumps([rel, "file", perm, sha]).encode())
    return {"tree": digest.hexdigest()}


# -- the kinds of source -------------------------------------------------------------------------


class _InlineSource(Source):
    def __init__(self, where: str, target: str, mode: int | None, data: bytes) -> None:
        super().__init__(where, target, 0o644 if mode is None else mode)
        self.data = data

    async def resolve(self) -> None:
        self.fingerprint = {"sha256": hashlib.sha256(self.data).hexdigest(), "mode": self.mode}

    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        assert self.mode is not None
        data = io.BytesIO(self.data)
        _add_file(tar, self.target, data, len(self.data), self.mode, None, self.where)
        return self.fingerprint


class _EmptyDir(Source):
    async def resolve(self) -> None:
        self.fingerprint = {"dir": True, "mode": self.mode}

    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        _add_dir(tar, self.target, 0o755 if self.mode is None else self.mode)
        return self.fingerprint


class _HostSource(Source):
    """A host file or directory, read on the worker."""

    def __init__(self, where: str, target: str, mode: int | None, path: str, is_dir: bool):
        super().__init__(where, target, mode)
        self.path, self.is_dir = path, is_dir

    async def resolve(self) -> None:
        self.fingerprint = await asyncio.to_thread(self._read, None)

    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        return self._read(tar)

    def _read(self, tar: tarfile.TarFile | None) -> dict[str, Any]:
        field = f"{self.where}.host"
        try:
            st = os.stat(self.path)
            if self.is_dir:
                if not stat.S_ISDIR(st.st_mode):
                    raise SourceError(field, f"{self.path!r} is not a directory; use files")
                return _host_tree(self.path, tar, self.target, self.mode, self.where)
            if stat.S_ISDIR(st.st_mode):
                raise SourceError(field, f"{self.path!r} is a directory; list it under dirs")
            with open(self.path, "rb") as file:
                fst = os.fstat(file.fileno())
                if not stat.S_ISREG(fst.st_mode):
                    raise SourceError(field, f"{self.path!r} is not a regular file")
                mode = stat.S_IMODE(fst.st_mode) if self.mode is None else self.mode
                sha = _add_file(tar, self.target, file, fst.st_size, mode, fst.st_mtime, field)
            return {"sha256": sha, "mode": mode}
        except FileNotFoundError:
            raise SourceError(
                field, f"{self.path!r} does not exist on this worker; fix the path or create it"
            ) from None
        except PermissionError as exc:
            raise SourceError(field, f"{self.path!r} cannot be read here: {exc}") from None


class _UrlSource(Source):
    """An object (or, for a directory, every object under a prefix) at an fsspec URL."""

    def __init__(
        self,
        where: str,
        target: str,
        mode: int | None,
        url: str,
        options: StorageOptions,
        is_dir: bool,
    ) -> None:
        super().__init__(where, target, mode)
        self.url, self.options, self.is_dir = url, options, is_dir
        self.field = f"{where}.url"
        self.objects: list[tuple[str, str, int | None, str]] = []
        """(relative name, fsspec path, size, version) of each object to write."""
        self.fs: Any = None

    async def resolve(self) -> None:
        self.fingerprint = await asyncio.to_thread(self._resolve)

    def _resolve(self) -> dict[str, Any]:
        self.fs, path = self._open_fs()
        try:
            self.fs.invalidate_cache()  # fsspec instances are shared: no stale listings or tags
            if self.is_dir:
                if not self.fs.isdir(path):
                    raise FileNotFoundError(path)
                found = self.fs.find(path, detail=True)
                infos = {
                    name[len(path) :].strip("/"): info
                    for name, info in found.items()
                    if info.get("type") != "directory"
                }
            else:
                info = self.fs.info(path)
                if info.get("type") == "directory":
                    raise SourceError(self.field, f"{self.url!r} is a directory; use dirs")
                infos = {"": info}
            for rel, info in sorted(infos.items()):
                name = info.get("name", path)
                version = _version_tag(info)
                if version is None:  # no version tag: digest the content itself
                    with self.fs.open(name, "rb") as file:
                        version = "sha256:" + _digest(file)
                self.objects.append((rel, name, info.get("size"), version))
        except SourceError:
            raise
        except FileNotFoundError as exc:
            cause = exc.__cause__  # fsspec's http turns a failed connection into this
            missing = isinstance(cause, FileNotFoundError) or getattr(cause, "status", 0) == 404
            if cause is not None and not missing:
                raise SourceError(
                    self.field, f"cannot read {self.url!r}: {cause}", retryable=True
                ) from None
            raise SourceError(self.field, f"{self.url!r} does not exist; fix the URL") from None
        except Exception as exc:
            raise SourceError(
                self.field, f"cannot read {self.url!r}: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        return self._print([[rel, version] for rel, _, _, version in self.objects])

    def _print(self, versions: list[list[str]]) -> dict[str, Any]:
        return {"url": self.url, "objects": versions, "mode": self.mode}

    def _open_fs(self) -> tuple[Any, str]:
        try:
            import fsspec
            from fsspec.core import url_to_fs

            protocol = fsspec.utils.get_protocol(self.url)
            return url_to_fs(self.url, **dict(self.options.get(protocol, {})))
        except ImportError as exc:
            raise SourceError(
                self.field, f"cannot read {self.url!r}: {exc} (install the fsspec backend)"
            ) from None
        except ValueError as exc:
            raise SourceError(self.field, f"cannot read {self.url!r}: {exc}") from None

    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        if self.is_dir:
            _add_dir(tar, self.target, 0o755 if self.mode is None else self.mode)
        made = {""}
        file_mode = 0o644 if self.mode is None or self.is_dir else self.mode
        written: list[list[str]] = []
        try:
            for rel, name, size, version in self.objects:
                parts = rel.split("/")[:-1]
                for k in range(1, len(parts) + 1):
                    parent = "/".join(parts[:k])
                    if parent not in made:
                        made.add(parent)
                        _add_dir(tar, _join(self.target, parent), 0o755)
                where = f"{self.field} ({rel})" if rel else self.field
                with self.fs.open(name, "rb") as file, tempfile.TemporaryFile() as spool:
                    source, length = file, size
                    if length is None:  # unknown length: spool to disk (a tar header needs it)
                        shutil.copyfileobj(file, spool, _CHUNK)
                        source, length = spool, spool.tell()
                        spool.seek(0)
                    name_in_tar = _join(self.target, rel)
                    sha = _add_file(tar, name_in_tar, source, length, file_mode, None, where)
                # What was read is the tagged version only if the tag still holds; otherwise
                # its digest goes into the key (which later lookups, by tag, will not match).
                if version.startswith("sha256:") or _version_tag(self.fs.info(name)) != version:
                    version = "sha256:" + sha
                written.append([rel, version])
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(
                self.field, f"cannot read {self.url!r}: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        return self._print(written)


def _version_tag(info: dict[str, Any]) -> str | None:
    return next((str(info[k]) for k in _VERSION_KEYS if info.get(k)), None)


def _digest(file: IO[bytes]) -> str:
    sha = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


class _GitSource(Source):
    """A git repository, fetched on the worker (so a sandbox without network gets it)."""

    def __init__(self, where: str, target: str, mode: int | None, git: GitSource) -> None:
        super().__init__(where, target, mode)
        self.git = git
        self.commit = ""
        self.branch: str | None = None
        self.checkout: str | None = None

    async def resolve(self) -> None:
        ref = self.git.ref or "HEAD"
        if re.fullmatch(r"[0-9a-f]{40}", ref):
            self.commit = ref
        else:
            out = await self._run(
                ["ls-remote", "--symref", self.git.url, ref], f"{self.where}.git.url"
            )
            refs: dict[str, str] = {}
            head = ""  # the branch the remote's HEAD points at, if it says
            for line in out.splitlines():
                value, _, name = line.partition("\t")
                if value.startswith("ref: refs/heads/") and name == "HEAD":
                    head = value.removeprefix("ref: refs/heads/")
                else:
                    refs[name] = value
            for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
                if name in refs:
                    self.commit = refs[name]
                    if name == f"refs/heads/{ref}":
                        self.branch = ref
                    elif name == "HEAD":
                        self.branch = head or None
                    break
            else:
                raise SourceError(
                    f"{self.where}.git.ref",
                    f"{ref!r} is not a branch or tag of {_public(self.git.url)}; give a branch, "
                    f"a tag or a full 40-character commit id",
                )
        self.fingerprint = self._print(self.commit)

    def _print(self, commit: str) -> dict[str, Any]:
        return {
            "git": _public(self.git.url),
            "commit": commit,
            "depth": self.git.depth,
            "mode": self.mode,
        }

    async def fetch(self) -> None:
        self.checkout = await asyncio.to_thread(tempfile.mkdtemp, prefix="sandbank-git-")
        where = f"{self.where}.git"
        repo = ["-C", self.checkout]
        await self._run(["init", "-q", self.checkout], where)
        depth = [f"--depth={self.git.depth}"] if self.git.depth else []
        ref = self.branch or self.git.ref or "HEAD"
        await self._run([*repo, "fetch", "-q", "--no-tags", *depth, self.git.url, ref], where)
        await self._run([*repo, "checkout", "-q", "--detach", "FETCH_HEAD"], where)
        if self.branch:
            await self._run([*repo, "checkout", "-q", "-B", self.branch], where)
        await self._run([*repo, "remote", "add", "origin", _public(self.git.url)], where)
        self.commit = (await self._run([*repo, "rev-parse", "HEAD"], where)).strip()

    def write(self, tar: tarfile.TarFile) -> dict[str, Any]:
        assert self.checkout is not None, "fetch() first"
        mode = 0o755 if self.mode is None else self.mode  # not the temporary clone's 0o700
        _host_tree(self.checkout, tar, self.target, mode, self.where)
        return self._print(self.commit)

    def close(self) -> None:
        if self.checkout is not None:
            shutil.rmtree(self.checkout, ignore_errors=True)
            self.checkout = None

    async def _run(self, args: list[str], where: str) -> str:
        argv = ["git", *args]
        request = ExecRequest(argv=argv, cwd=".", env={}, stdin=None, timeout=_GIT_TIMEOUT)
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        try:
            result = await run_process(argv, request, OutputCollector(), env=env)
        except ExecTimeout:
            raise SourceError(
                where, f"git {args[0]} timed out after {_GIT_TIMEOUT:g}s", retryable=True
            ) from None
        if result.exit_code == 127:
            raise SourceError(where, "git is not installed on this worker; install git")
        if result.exit_code != 0:
            message = result.stderr.decode(errors="replace").strip()
            command = args[2] if args[0] == "-C" else args[0]
            raise SourceError(
                where,
                f"git {command} failed for {_public(self.git.url)}: {message}",
                retryable=True,
            )
        return result.stdout.decode(errors="replace")


def _public(url: str) -> str:
    """``url`` without a user name or password in it."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))

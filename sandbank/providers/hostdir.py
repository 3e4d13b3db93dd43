"""Sandboxes whose workspace is a directory on this host: every file and tar primitive.

``HostDirectory`` does race-safe file and tar operations on the directory, resolving every
path component through directory file descriptors, so a symlink planted in the workspace
can never make sandbank read or write outside it. ``HostDirSandbox`` implements every file
and tar primitive of ``Sandbox`` with it, leaving ``_exec`` to the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import os
import secrets
import shutil
import stat
import sys
import tarfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from sandbank._hostfs import O_DIR_NOFOLLOW, entry_type
from sandbank._streams import CHUNK, SyncReader, stream_from_thread
from sandbank.errors import (
    ConfigurationError,
    PathNotFound,
    SandboxLost,
    WorkspacePathError,
)
from sandbank.manifest import Manifest
from sandbank.providers._tar import TarGuard, member_path
from sandbank.providers.base import WORKSPACE, FileEntry, Provider, Sandbox, SandboxStatus

__all__ = ["HostDirSandbox", "HostDirectory"]

log = logging.getLogger(__name__)

_MAX_LINKS = 40
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class HostDirectory:
    """Race-safe file and tar operations on the host directory ``root``; all blocking.

    Paths are workspace-relative (as ``normalize_path`` returns them). Symlinks are followed
    as commands see them: an absolute target must lie under ``workspace`` (where the root
    appears to commands) and a relative one must not climb above the root; anything else
    raises ``WorkspacePathError``. A missing ``root`` raises ``SandboxLost``.
    """

    def __init__(self, root: str, sandbox_id: str, workspace: str = WORKSPACE) -> None:
        self.root = root
        self.sandbox_id = sandbox_id
        self.workspace = workspace

    # path resolution

    def resolve(self, rel: str, *, follow: bool, create: bool = False) -> tuple[int, str]:
        """Open the directory holding ``rel``; returns ``(dir_fd, name)``, caller closes.

        ``name`` is "" when ``rel`` resolves to a directory itself (e.g. the root). With
        ``follow`` a final symlink is resolved too; ``create`` makes missing parents.
        """
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise SandboxLost(self.sandbox_id, f"its workspace {self.root} is gone") from None
        stack = [root_fd]
        todo = deque(p for p in rel.split("/") if p not in ("", "."))
        links = 0
        try:
            while todo:
                part = todo.popleft()
                if part == ".":
                    continue
                if part == "..":
                    if len(stack) == 1:
                        raise WorkspacePathError(rel)
                    os.close(stack.pop())
                    continue
                last = not todo
                if last and not follow:
                    return stack.pop(), part
                try:
                    st = os.stat(part, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if last:
                        return stack.pop(), part
                    if not create:
                        raise PathNotFound(rel, self.sandbox_id) from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=stack[-1])
                    todo.appendleft(part)
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links += 1
                    if links > _MAX_LINKS:
                        raise WorkspacePathError(rel, "has too many levels of symbolic links")
                    target = os.readlink(part, dir_fd=stack[-1])
                    pure = PurePosixPath(target)
                    if pure.is_absolute():
                        try:
                            pure = pure.relative_to(self.workspace)
                        except ValueError:
                            raise WorkspacePathError(
                                rel, f"goes through the symlink {part!r} -> {target!r}"
                            ) from None
                        while len(stack) > 1:
                            os.close(stack.pop())
                    todo.extendleft(reversed([p for p in pure.parts if p != "."]))
                    continue
                if last:
                    return stack.pop(), part
                if not stat.S_ISDIR(st.st_mode):
                    if create:
                        raise ConfigurationError(
                            f"cannot create {rel!r}: {part!r} is not a directory; remove it first"
                        )
                    raise PathNotFound(rel, self.sandbox_id)
                try:
                    stack.append(os.open(part, O_DIR_NOFOLLOW, dir_fd=stack[-1]))
                except OSError as exc:
                    raise self._raced(rel, exc) from None
            return stack.pop(), ""
        finally:
            for fd in stack:
                os.close(fd)

    def _raced(self, rel: str, exc: OSError) -> Exception:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            return WorkspacePathError(rel, "changed while sandbank was resolving it; retry")
        return exc

    def open_dir(self, rel: str) -> int:
        """A read fd on the directory ``rel`` (following links inside the workspace).

        Missing: ``PathNotFound``; not a directory: ``ConfigurationError``. Caller closes.
        """
        fd, name = self.resolve(rel, follow=True)
        if not name:
            return fd
        try:
            return os.open(name, O_DIR_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            raise PathNotFound(rel, self.sandbox_id) from None
        except NotADirectoryError:
            raise ConfigurationError(f"{rel!r} is not a directory") from None
        except OSError as exc:
            raise self._raced(rel, exc) from None
        finally:
            os.close(fd)

    # operations

    def host_dir(self, rel: str) -> str:
        """The host path of the directory ``rel``, checked like ``open_dir`` (e.g. a cwd)."""
        os.close(self.open_dir(rel))
        return self.root if rel == "." else os.path.join(self.root, rel)

    def read_file(self, rel: str) -> bytes:
        fd, name = self.resolve(rel, follow=True)
        try:
            if not name:
                raise _is_a_directory(rel)
            try:
                file_fd = os.open(name, _O_FILE, dir_fd=fd)
            except FileNotFoundError:
                raise PathNotFound(rel, self.sandbox_id) from None
            except OSError as exc:
                raise self._raced(rel, exc) from None
        finally:
            os.close(fd)
        mode = os.fstat(file_fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(file_fd)
            if stat.S_ISDIR(mode):
                raise _is_a_directory(rel)
            raise ConfigurationError(f"{rel!r} is not a regular file and cannot be read")
        with open(file_fd, "rb") as file:
            return file.read()

    def write_file(self, rel: str, data: bytes, mode: int | None) -> None:
        fd, name = self.resolve(rel, follow=True, create=True)
        try:
            if not name:
                raise _is_a_directory(rel)
            try:
                existing = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                existing = None
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                raise _is_a_directory(rel)
            if mode is None:
                keep = existing is not None and stat.S_ISREG(existing.st_mode)
                mode = stat.S_IMODE(existing.st_mode) if keep and existing else 0o644
            self._atomic_write(fd, name, [data], mode, None)
        finally:
            os.close(fd)

    @staticmethod
    def _atomic_write(
        dir_fd: int,
        name: str,
        chunks: Iterator[bytes] | list[bytes],
        mode: int,
        mtime: float | None,
    ) -> None:
        temp = f".sandbank-{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        file_fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        try:
            with open(file_fd, "wb", closefd=False) as file:
                for chunk in chunks:
                    file.write(chunk)
            os.fchmod(file_fd, mode)
            if mtime is not None:
                os.utime(file_fd, (mtime, mtime))
            os.close(file_fd)
            file_fd = -1
            _replace(dir_fd, temp, name)
        except BaseException:
            if file_fd >= 0:
                os.close(file_fd)
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise

    def mkdir(self, rel: str) -> None:
        fd, name = self.resolve(rel, follow=True, create=True)
        try:
            if not name:
                return
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise ConfigurationError(
                        f"cannot create directory {rel!r}: a file exists there; remove it first"
                    ) from None
        finally:
            os.close(fd)

    def remove(self, rel: str) -> None:
        fd, name = self.resolve(rel, follow=False)
        try:
            if not name:
                raise WorkspacePathError(rel, "is the workspace root")
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise PathNotFound(rel, self.sandbox_id) from None
            _remove_at(fd, name, st)
        finally:
            os.close(fd)

    def list_tree(self, rel: str) -> list[FileEntry]:
        fd = self.open_dir(rel)
        prefix = "" if rel == "." else rel + "/"
        try:
            return [_entry(path, name, parent, st) for path, name, parent, st in _walk(fd, prefix)]
        finally:
            os.close(fd)

    # tar

    def export_tar(self, paths: list[str] | None, out: BinaryIO) -> None:
        """Write a PAX tar of the workspace (``None``) or of ``paths`` to ``out``."""
        selected = _outermost(paths if paths is not None else ["."])
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for rel in selected:
                if rel == ".":
                    fd = self.open_dir(".")
                    try:
                        for path, name, parent, st in _walk(fd, ""):
                            _add_member(tar, path, name, parent, st)
                    finally:
                        os.close(fd)
                    continue
                fd, name = self.resolve(rel, follow=False)
                try:
                    if not name:  # pragma: no cover - normalize_path leaves no '..'
                        continue
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except FileNotFoundError:
                        raise PathNotFound(rel, self.sandbox_id) from None
                    _add_member(tar, rel, name, fd, st)
                    if stat.S_ISDIR(st.st_mode):
                        sub = os.open(name, O_DIR_NOFOLLOW, dir_fd=fd)
                        try:
                            for path, child, parent, cst in _walk(sub, rel + "/"):
                                _add_member(tar, path, child, parent, cst)
                        finally:
                            os.close(sub)
                finally:
                    os.close(fd)

    def import_tar(self, source: BinaryIO) -> None:
        """Extract the tar read from ``source``, refusing members that would leave the root."""
        guard = TarGuard()
        dirs: list[tuple[str, int, float]] = []
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                path = guard.check(member)
                if path == ".":
                    continue
                fd, name = self.resolve(path, follow=False, create=True)
                try:
                    self._extract(tar, member, fd, name)
                finally:
                    os.close(fd)
                if member.isdir():
                    dirs.append((path, member.mode & 0o7777, member.mtime))
        for path, mode, mtime in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
            fd, name = self.resolve(path, follow=False)
            try:
                sub = os.open(name, O_DIR_NOFOLLOW, dir_fd=fd)
            except OSError:
                log.warning("directory %r changed during import; its mode was not set", path)
                continue
            finally:
                os.close(fd)
            try:
                os.fchmod(sub, mode)
                os.utime(sub, (mtime, mtime))
            finally:
                os.close(sub)

    async def stream_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        """``export_tar`` from a worker thread, as an async stream of chunks."""
        async for chunk in stream_from_thread(lambda out: self.export_tar(paths, out)):
            yield chunk

    async def extract_tar(self, stream: AsyncIterator[bytes]) -> None:
        """``import_tar`` of an async stream, in a worker thread."""
        reader = SyncReader(stream, asyncio.get_running_loop())
        await asyncio.to_thread(self.import_tar, reader)  # type: ignore[arg-type]

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo, fd: int, name: str) -> None:
        try:
            existing: os.stat_result | None = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if member.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                os.unlink(name, dir_fd=fd)
                existing = None
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=fd)
            return
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            shutil.rmtree(name, dir_fd=fd)
            existing = None
        if member.isfile():
            data = tar.extractfile(member)
            assert data is not None
            chunks = iter(lambda: data.read(CHUNK), b"")
            self._atomic_write(fd, name, chunks, member.mode & 0o7777, member.mtime)
        elif member.issym():
            if existing is not None:
                os.unlink(name, dir_fd=fd)
            os.symlink(member.linkname, name, dir_fd=fd)
            os.utime(name, (member.mtime, member.mtime), dir_fd=fd, follow_symlinks=False)
        elif member.islnk():
            tfd, tname = self.resolve(member_path(member.linkname), follow=False)
            try:
                if existing is not None:
                    os.unlink(name, dir_fd=fd)
                os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(tfd)
        else:
            raise ConfigurationError(
                f"tar member {member.name!r} has an unsupported type; only files, "
                f"directories and links can be imported into a workspace"
            )


class HostDirSandbox(Sandbox):
    """A sandbox whose workspace is the host directory ``root``: every file and tar
    primitive, with the path and symlink checks, done on this host. Subclasses implement
    ``_exec`` (``host_cwd`` checks its cwd; ``run_process`` runs it) and declare the
    ``host_path`` capability. ``workspace`` is where commands see ``root``.
    """

    def __init__(
        self,
        provider: Provider,
        sandbox_id: str,
        manifest: Manifest,
        root: str,
        *,
        workspace: str = WORKSPACE,
    ) -> None:
        super().__init__(provider, sandbox_id, manifest, workspace=workspace)
        self.files = HostDirectory(root, sandbox_id, self.workspace)

    @property
    def host_path(self) -> str:
        return self.files.root

    async def host_cwd(self, cwd: str) -> str:
        """The host directory of a request's ``cwd``: ``SandboxLost`` if the workspace is
        gone, ``PathNotFound`` if ``cwd`` is missing, ``WorkspacePathError`` if it leaves."""
        return await asyncio.to_thread(self.files.host_dir, cwd)

    async def _read_file(self, path: str) -> bytes:
        return await asyncio.to_thread(self.files.read_file, path)

    async def _write_file(self, path: str, data: bytes, mode: int | None) -> None:
        await asyncio.to_thread(self.files.write_file, path, data, mode)

    async def _list_tree(self, path: str) -> list[FileEntry]:
        return await asyncio.to_thread(self.files.list_tree, path)

    async def _remove(self, path: str) -> None:
        await asyncio.to_thread(self.files.remove, path)

    async def _mkdir(self, path: str) -> None:
        await asyncio.to_thread(self.files.mkdir, path)

    def _export_tar(self, paths: list[str] | None) -> AsyncIterator[bytes]:
        return self.files.stream_tar(paths)

    async def _import_tar(self, stream: AsyncIterator[bytes]) -> None:
        await self.files.extract_tar(stream)

    async def _status(self) -> SandboxStatus:
        """RUNNING while the directory exists, LOST once it is gone."""
        exists = await asyncio.to_thread(os.path.isdir, self.files.root)
        return SandboxStatus.RUNNING if exists else SandboxStatus.LOST


def _is_a_directory(rel: str) -> ConfigurationError:
    return ConfigurationError(
        f"{rel!r} is a directory, not a file; use list_tree() to see its contents"
    )


def _remove_at(fd: int, name: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=fd)
    else:
        os.unlink(name, dir_fd=fd)


def _outermost(paths: list[str]) -> list[str]:
    """The selected paths without duplicates or paths inside another selected one."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if any(k == "." or path.startswith(k + "/") for k in kept):
            continue
        kept.append(path)
    return kept


def _walk(dir_fd: int, prefix: str) -> Iterator[tuple[str, str, int, os.stat_result]]:
    """``(path, name, parent_fd, lstat)`` for everything under ``dir_fd``, parents first."""
    with os.scandir(dir_fd) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        try:
            st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        path = prefix + entry.name
        yield path, entry.name, dir_fd, st
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(entry.name, O_DIR_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                log.warning("skipping %r: %s", path, exc)
                continue
            try:
                yield from _walk(sub, path + "/")
            finally:
                os.close(sub)


def _entry(path: str, name: str, parent: int, st: os.stat_result) -> FileEntry:
    kind = entry_type(st.st_mode)
    return FileEntry(
        path=path,
        type=kind,
        size=0 if kind == "dir" else st.st_size,
        mode=stat.S_IMODE(st.st_mode),
        mtime=st.st_mtime,
        link_target=os.readlink(name, dir_fd=parent) if kind == "symlink" else None,
    )


class _Exactly:
    """Reads exactly ``size`` bytes from a file that may change meanwhile (zero-padded)."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._left = size

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self._left:
            n = self._left
        data = self._file.read(n)
        if len(data) < n:
            data += b"\0" * (n - len(data))
        self._left -= n
        return data


def _add_member(
    tar: tarfile.TarFile, path: str, name: str, parent: int, st: os.stat_result
) -> None:
    info = tarfile.TarInfo(path)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = st.st_mtime
    info.uid, info.gid = st.st_uid, st.st_gid
    kind = entry_type(st.st_mode)
    if kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=parent)
        tar.addfile(info)
    elif kind == "file":
        try:
            fd = os.open(name, _O_FILE, dir_fd=parent)
        except OSError as exc:
            log.warning("skipping %r in tar export: %s", path, exc)
            return
        with open(fd, "rb") as file:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                return
            info.size = fst.st_size
            info.mtime = fst.st_mtime
            tar.addfile(info, _Exactly(file, fst.st_size))
    else:
        log.debug("skipping special file %r in tar export", path)


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_RENAME_EXCHANGE = 2


def _replace(dir_fd: int, temp: str, name: str) -> None:
    """Atomically put ``temp`` in place of ``name`` (both in ``dir_fd``).

    An existing file is swapped out with ``renameat2(RENAME_EXCHANGE)`` and then unlinked:
    still atomic for readers, and on ext4 about 4x faster for a 10 MiB file than a rename
    over it, which makes the kernel flush the new data first (``auto_da_alloc``).
    """
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if _libc is not None and existing is not None and not stat.S_ISDIR(existing.st_mode):
        swapped = _libc.renameat2(
            dir_fd, os.fsencode(temp), dir_fd, os.fsencode(name), _RENAME_EXCHANGE
        )
        if swapped == 0:
            os.unlink(temp, dir_fd=dir_fd)
            return
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

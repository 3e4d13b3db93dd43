"""Single files over a sandbox's tar streams: size-checked reads, streamed writes, copies.

A member is read from ``export_tar([path])``: its header arrives before its data, so a
read knows the size before it keeps any data, and keeps at most ``limit`` bytes.
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from sandbank.errors import ConfigurationError, SandbankError, WorkspacePathError
from sandbank.providers.base import WORKSPACE, Sandbox, normalize_path

__all__ = [
    "FileTooLarge",
    "Member",
    "member_tar",
    "read_member",
    "read_target",
    "resolve_link",
    "stream_file_tar",
]

_HEADER_LIMIT = 1024 * 1024
"""Bytes a member's headers (pax records, long names) may take before its data starts."""
_PIECE = 1024 * 1024
_MAX_LINKS = 40


class FileTooLarge(ConfigurationError):
    """A file is bigger than a session reads whole; read a part of it with a command."""

    def __init__(self, path: str, size: int, limit: int) -> None:
        super().__init__(
            f"file {path!r} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB this "
            f"sandbox session reads whole; read a part of it with a command (head, tail, grep), "
            f"or raise max_read_bytes"
        )
        self.path = path
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class Member:
    """A workspace entry as its tar header describes it, with up to ``limit`` data bytes."""

    path: str
    info: tarfile.TarInfo
    data: bytes = b""


async def read_member(box: Sandbox, rel: str, *, limit: int | None, strict: bool) -> Member:
    """The entry at ``rel`` (a final symlink is not followed) and its first data bytes.

    ``limit`` bounds the data read (None: headers only). With ``strict`` a regular file
    larger than ``limit`` raises ``FileTooLarge`` before any of its data moves.
    """
    stream = box.export_tar([rel])
    buf = bytearray()
    info: tarfile.TarInfo | None = None
    try:
        async for chunk in stream:
            buf += chunk
            if info is None:
                info = _first_header(buf)
                if info is None:
                    continue
                if not info.isreg() or limit is None:
                    return Member(rel, info)
                if strict and info.size > limit:
                    raise FileTooLarge(rel, info.size, limit)
            end = info.offset_data + min(info.size, limit or 0)
            if len(buf) >= end:
                return Member(rel, info, bytes(buf[info.offset_data : end]))
    finally:
        # Read to the end rather than close early: ``Sandbox.export_tar`` does not close the
        # provider's stream when its consumer does, and a provider thread would stay blocked.
        with contextlib.suppress(SandbankError):
            async for _ in stream:
                pass
    raise ConfigurationError(f"the sandbox returned a truncated archive for {rel!r}; try again")


async def read_target(box: Sandbox, rel: str, *, limit: int, strict: bool = True) -> Member:
    """Like ``read_member``, following symlinks inside the workspace (``WorkspacePathError``
    for one that leaves it). Raises ``IsADirectoryError`` for a directory."""
    for _ in range(_MAX_LINKS):
        member = await read_member(box, rel, limit=limit, strict=strict)
        if member.info.issym():
            rel = resolve_link(rel, member.info.linkname)
        elif member.info.isdir():
            raise IsADirectoryError(f"{rel!r} is a directory, not a file")
        elif not member.info.isreg():
            raise ConfigurationError(f"{rel!r} is not a regular file")
        else:
            return member
    raise WorkspacePathError(rel, f"goes through more than {_MAX_LINKS} symlinks")


def resolve_link(rel: str, target: str) -> str:
    """The workspace path a symlink at ``rel`` points to, or ``WorkspacePathError``."""
    if not target.startswith("/"):
        target = posixpath.join(WORKSPACE, posixpath.dirname(rel), target)
    try:
        return normalize_path(target)
    except WorkspacePathError:
        raise WorkspacePathError(
            rel, f"is a symlink to {target!r}, outside the workspace"
        ) from None


async def stream_file_tar(
    rel: str, source: IO[bytes], size: int, *, mode: int = 0o644
) -> AsyncIterator[bytes]:
    """A one-member tar of ``size`` bytes read from ``source`` in pieces (never whole)."""
    info = tarfile.TarInfo(rel)
    info.size, info.mode, info.mtime = size, mode, int(time.time())
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    left = size
    while left > 0:
        piece = source.read(min(left, _PIECE))
        if not piece:
            raise ConfigurationError(f"the data for {rel!r} ended {left} bytes early")
        left -= len(piece)
        yield bytes(piece)
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def member_tar(member: Member, rel: str) -> bytes:
    """A one-member tar holding ``member`` (a file with its data, or a symlink) at ``rel``."""
    info = tarfile.TarInfo(rel)
    info.type, info.mode, info.mtime = member.info.type, member.info.mode, member.info.mtime
    info.linkname, info.size = member.info.linkname, len(member.data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(member.data) if member.info.isreg() else None)
    return out.getvalue()


def _first_header(buf: bytearray) -> tarfile.TarInfo | None:
    """The first member's header once ``buf`` holds all of it, else None."""
    try:
        with tarfile.open(fileobj=io.BytesIO(bytes(buf)), mode="r:") as tar:
            info = tar.next()
    except tarfile.ReadError:
        info = None
    if info is None:
        if len(buf) > _HEADER_LIMIT:
            raise ConfigurationError("a tar header from the sandbox is too long to read")
        return None
    if info.offset_data > len(buf):
        return None
    return info

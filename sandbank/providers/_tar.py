"""Checks that keep tar members inside the workspace, shared by every provider.

Member names must be relative and stay inside the root. Symlinks are kept as links (their
target text is not rewritten), but no later member may be written through a link, and
hard links must point at another member inside the root. Devices are refused.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from sandbank.errors import ConfigurationError, WorkspacePathError

__all__ = ["TarGuard", "TarReader", "member_path", "strip_top_component"]


def member_path(name: str) -> str:
    """The workspace-relative path of a tar member, or ``WorkspacePathError``."""
    if "\x00" in name:
        raise WorkspacePathError(name, "is a tar member name with a NUL byte")
    if name.startswith("/"):
        raise WorkspacePathError(name, "is an absolute tar member")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise WorkspacePathError(name, "is a tar member that climbs out with '..'")
    return "/".join(parts) or "."


class TarGuard:
    """Validates the members of one archive in order; call ``check`` for each member.

    It remembers the symlinks the archive creates, so a later member written through one
    of them is refused. Links already in the target are the extracting provider's to check.
    """

    def __init__(self) -> None:
        self._links: set[str] = set()
        self._members: set[str] = set()

    def check(self, member: tarfile.TarInfo) -> str:
        """The member's workspace-relative path, or ``WorkspacePathError`` /
        ``ConfigurationError`` (devices) for a member that must not be extracted."""
        path = member_path(member.name)
        if self._links:
            slash = path.find("/")
            while slash != -1:
                parent = path[:slash]
                if parent in self._links:
                    raise WorkspacePathError(member.name, f"goes through the symlink {parent!r}")
                slash = path.find("/", slash + 1)
        if member.isdev():
            raise ConfigurationError(
                f"tar member {member.name!r} is a device node; only files, directories and "
                f"links can be imported into a workspace"
            )
        if member.islnk():
            target = member_path(member.linkname)
            if target not in self._members:
                raise WorkspacePathError(
                    member.linkname,
                    f"is the target of hard link {member.name!r}, not in the archive",
                )
        if member.issym():
            self._links.add(path)
        else:
            self._links.discard(path)
        self._members.add(path)
        return path


# -- renaming the members of a stream without re-encoding it ------------------------------

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_PIECE = 1024 * 1024


def strip_top_component(source: Any, write: Callable[[bytes], object]) -> None:
    """Copy a tar stream, dropping the first component of member names and hard link targets.

    ``top/a/b`` becomes ``a/b``; the member left with no name (``top/`` itself) is left out.
    Only headers are rewritten, and names only get shorter, so each fits where it was: in a
    ustar name or prefix field, a pax ``path``/``linkpath`` record or a GNU long name.
    Symlink targets are not names and stay as they are; modes lose their file type bits
    (as ``tarfile`` writes them). File data is copied untouched. ``source.read(n)`` must
    return ``n`` bytes unless the stream ended (a ``BufferedReader`` does). A truncated
    stream or a header failing its checksum raises ``tarfile.ReadError``.
    """
    pending: list[tuple[bytes, bytes, bytes]] = []  # pax/GNU headers before a member
    while True:
        hdr = _read_exact(source, _BLOCK)
        if hdr == _ZERO_BLOCK:
            if pending:
                raise tarfile.ReadError("the archive ends after an extended header")
            write(_ZERO_BLOCK * 2)
            return
        body = _check_header(hdr)
        kind = hdr[156:157]
        size = _number(hdr[124:136])
        if kind in (b"x", b"X", b"L", b"K"):
            pending.append((kind, hdr, _read_exact(source, _padded(size))[:size]))
            continue
        if kind == b"g":  # global pax header: names nothing
            write(hdr)
            _copy(source, write, _padded(size))
            continue
        pax: dict[bytes, bytes] = {}
        long_name: bytes | None = None
        for k, _h, payload in pending:
            if k in (b"x", b"X"):
                pax.update(_pax_records(payload))
            elif k == b"L":
                long_name = payload.split(b"\0", 1)[0]
        if b"size" in pax:
            try:
                size = int(pax[b"size"])
            except ValueError:
                raise tarfile.ReadError("invalid size in a pax header") from None
        name = pax.get(b"path") or long_name or _ustar_name(hdr)
        hard = kind == b"1"
        if not _strip(name).strip(b"/"):  # the top directory
            pending = []
            _skip(source, _padded(size))
            continue
        for k, h, payload in pending:
            if k in (b"x", b"X"):
                payload = b"".join(
                    _pax_record(key, _strip(value) if _renamed(key, hard) else value)
                    for key, value in _pax_records(payload)
                )
            elif k == b"L" or hard:
                payload = _strip(payload.split(b"\0", 1)[0]) + b"\0"
            write(_with_checksum(h[:124] + b"%011o\0" % len(payload) + h[136:]))
            write(payload + bytes(_padded(len(payload)) - len(payload)))
        pending = []
        write(_renamed_header(hdr, body, kind, hard))
        _copy(source, write, _padded(size))


def _read_exact(source: Any, n: int) -> bytes:
    data = source.read(n)
    if len(data) != n:
        raise tarfile.ReadError("unexpected end of the archive")
    return bytes(data)


def _copy(source: Any, write: Callable[[bytes], object], n: int) -> None:
    while n > 0:
        data = _read_exact(source, min(n, _PIECE))
        write(data)
        n -= len(data)


def _skip(source: Any, n: int) -> None:
    while n > 0:
        n -= len(_read_exact(source, min(n, _PIECE)))


def _padded(n: int) -> int:
    return (n + _BLOCK - 1) // _BLOCK * _BLOCK


def _number(field: bytes) -> int:
    """A numeric header field: octal digits, or base-256 (first byte 0x80 or 0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[0] == 0xFF else n
    try:
        return int(_field(field).strip() or b"0", 8)
    except ValueError:
        raise tarfile.ReadError("invalid number in a tar header") from None


def _check_header(hdr: bytes) -> int:
    """The header's checksum (as ustar computes it), or ``tarfile.ReadError`` if it is wrong."""
    chksum = _number(hdr[148:156])
    unsigned = sum(hdr) - sum(hdr[148:156]) + 256
    if chksum != unsigned:  # some old tars summed signed bytes
        signed = unsigned - 256 * sum(1 for b in hdr[:148] + hdr[156:] if b > 127)
        if chksum != signed:
            raise tarfile.ReadError("bad checksum in a tar header")
    return unsigned


def _with_checksum(hdr: bytes, chksum: int | None = None) -> bytes:
    if chksum is None:
        chksum = sum(hdr[:148]) + 256 + sum(hdr[156:])
    return hdr[:148] + b"%06o\0 " % chksum + hdr[156:]


def _field(data: bytes) -> bytes:
    return data.split(b"\0", 1)[0]


def _ustar(hdr: bytes, kind: bytes) -> bool:
    """Whether the header's prefix field is part of its name (as ``tarfile`` reads it)."""
    return kind not in (b"L", b"K", b"S") and bool(_field(hdr[345:500]))


def _ustar_name(hdr: bytes) -> bytes:
    name = _field(hdr[:100])
    return _field(hdr[345:500]) + b"/" + name if _ustar(hdr, hdr[156:157]) else name


def _strip(name: bytes) -> bytes:
    return name.partition(b"/")[2]


def _renamed(key: bytes, hard: bool) -> bool:
    return key == b"path" or (key == b"linkpath" and hard)


def _renamed_header(hdr: bytes, chksum: int, kind: bytes, hard: bool) -> bytes:
    """``hdr`` with its names stripped; ``chksum`` is its checksum, updated for the change."""
    out = bytearray(hdr)
    fields = [(100, 108, b"%07o\0" % (_number(hdr[100:108]) & 0o7777))]  # no type bits (Go)
    if _ustar(hdr, kind):  # the first component is in the prefix
        fields.append((345, 500, _strip(_field(hdr[345:500])).ljust(155, b"\0")))
    else:
        fields.append((0, 100, _strip(_field(hdr[:100])).ljust(100, b"\0")))
    if hard:
        fields.append((157, 257, _strip(_field(hdr[157:257])).ljust(100, b"\0")))
    for start, end, value in fields:
        chksum += sum(value) - sum(hdr[start:end])
        out[start:end] = value
    return _with_checksum(bytes(out), chksum)


def _pax_records(data: bytes) -> list[tuple[bytes, bytes]]:
    records = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise tarfile.ReadError("invalid pax header") from None
        if space < 0 or length <= space - pos or pos + length > len(data):
            raise tarfile.ReadError("invalid pax header")
        key, eq, value = data[space + 1 : pos + length - 1].partition(b"=")
        if not eq or data[pos + length - 1 : pos + length] != b"\n":
            raise tarfile.ReadError("invalid pax header")
        records.append((key, value))
        pos += length
    return records


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + len(str(len(body)))
    if len(str(length)) != len(str(len(body))):
        length = len(body) + len(str(length))
    return str(length).encode() + body


# -- reading the members of a stream ------------------------------------------------------

_DATA_TYPES = (b"0", b"\0", b"7")  # regular files: data follows (as for unknown types)
_KNOWN_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # no data follows, whatever size says


class TarReader:
    """The members of an uncompressed tar stream, in order, named as ``tarfile`` names them.

    ``tarfile``'s stream mode spends most of its time on each member's header (it decodes
    every field, and keeps a file object per member); this reads only what naming and
    checking a member need. The ``TarInfo`` objects it yields carry ``name``, ``type``,
    ``linkname``, ``size``, ``mode`` and ``mtime``. The current member's data is read with
    ``read``/``readinto``; what is left of it is skipped when iteration moves on.

    It follows ``tarfile``: ustar prefixes, pax ``path``/``linkpath``/``size``/``mtime`` records
    (global ones too), GNU long names, no data after links and directories, and the end
    of the archive at the first zero block or at a header that is damaged or cut short
    (an error only for the first header, or after an extended one). Data cut short, and
    a malformed pax record (which some ``tarfile`` versions skip), raise
    ``tarfile.ReadError``. A GNU sparse member hands the rest of the stream to ``tarfile``.
    """

    def __init__(self, source: Any, errors: str = "surrogateescape") -> None:
        self._source = source
        self._errors = errors
        self._buf = b""
        self._view = memoryview(self._buf)
        self._pos = 0
        self._left = 0  # data of the current member not read yet
        self._pad = 0
        self._started = False
        self._globals: dict[bytes, bytes] = {}
        self._raw_globals: list[bytes] = []
        self._rest: _Chained | None = None  # the stream from a sparse member on, for tarfile
        self._fallback: Any = None  # the current member's data when tarfile reads

    # -- the buffer

    def _fill(self) -> bool:
        data = self._source.read(_PIECE)
        if not data:
            return False
        self._buf, self._view, self._pos = data, memoryview(data), 0
        return True

    def _take(self, n: int) -> bytes:
        """``n`` bytes, fewer only where the stream ends."""
        pos, end = self._pos, self._pos + n
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        parts = [self._buf[pos:]]
        have = len(parts[0])
        self._pos = len(self._buf)
        while have < n and self._fill():
            k = min(n - have, len(self._buf))
            parts.append(self._buf[:k])
            self._pos = k
            have += k
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                raise tarfile.ReadError("unexpected end of data")
            k = min(n, len(self._buf) - self._pos)
            self._pos += k
            n -= k

    # -- the current member's data

    def read(self, n: int = -1) -> bytes:
        if self._fallback is not None:
            return bytes(self._fallback.read(n))
        n = self._left if n < 0 else min(n, self._left)
        data = self._take(n)
        if len(data) != n:
            raise tarfile.ReadError("unexpected end of data")
        self._left -= n
        return data

    def readinto(self, target: Any) -> int:
        if self._fallback is not None:
            return int(self._fallback.readinto(target))
        n = min(len(target), self._left)
        if n == 0:
            return 0
        if self._pos >= len(self._buf) and not self._fill():
            raise tarfile.ReadError("unexpected end of data")
        n = min(n, len(self._buf) - self._pos)
        memoryview(target).cast("B")[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        self._left -= n
        return n

    # -- members

    def __iter__(self) -> Iterator[tarfile.TarInfo]:
        while True:
            member = self._next()
            if member is None:
                if self._rest is not None:
                    yield from self._fall_back()
                return
            yield member

    def _next(self) -> tarfile.TarInfo | None:
        self._skip(self._left + self._pad)
        self._left = self._pad = 0
        raw: list[bytes] = []  # the extended headers before the member, as read
        chain: list[tuple[bytes, Any]] = []
        while True:
            hdr = self._take(_BLOCK)
            problem, size, mode, mtime = _parse(hdr)
            if problem is not None:
                if raw:
                    raise tarfile.ReadError(f"{problem} after an extended header")
                if not self._started and problem != "end of archive":
                    raise tarfile.ReadError(problem)
                return None
            self._started = True
            kind = hdr[156:157]
            if kind in (b"x", b"X", b"g", b"L", b"K"):
                padded = self._take(_padded(size))
                if len(padded) != _padded(size):
                    raise tarfile.ReadError("unexpected end of data")
                raw.append(hdr + padded)
                payload = padded[:size]
                if kind in (b"L", b"K"):
                    chain.append((kind, _field(payload)))
                    continue
                records = dict(_pax_records(payload))
                if kind == b"g":
                    self._globals.update(records)
                    self._raw_globals.append(raw[-1])
                else:
                    chain.append((b"x", {**self._globals, **records}))
                continue
            sparse = kind == b"S" or any(
                k.startswith(b"GNU.sparse")
                for v in [self._globals, *(v for c, v in chain if c == b"x")]
                for k in v
            )
            if sparse:
                self._start_fallback(b"".join(raw) + hdr)
                return None
            return self._member(hdr, kind, size, mode, mtime, chain)

    def _member(
        self,
        hdr: bytes,
        kind: bytes,
        size: int,
        mode: int,
        mtime: float,
        chain: list[tuple[bytes, Any]],
    ) -> tarfile.TarInfo:
        if kind == b"\0" and _field(hdr[:100]).endswith(b"/"):
            kind = b"5"
        name = _field(hdr[:100])
        if kind == b"5":
            name = name.rstrip(b"/")
        prefix = _field(hdr[345:500])
        if prefix and kind not in (b"L", b"K", b"S"):
            name = prefix + b"/" + name
        link = _field(hdr[157:257])
        data_size = size
        # tarfile patches the member with the global pax records, then with each extended
        # header, innermost first: the outermost wins.
        for c, value in [(b"x", self._globals), *reversed(chain)]:
            if c == b"L":
                name = value.removesuffix(b"/") if kind == b"5" else value
            elif c == b"K":
                link = value
            else:
                if b"path" in value:
                    name = value[b"path"].rstrip(b"/")
                if b"linkpath" in value:
                    link = value[b"linkpath"]
                if b"size" in value:
                    try:
                        size = int(value[b"size"])
                    except ValueError:
                        size = 0
                if b"mtime" in value:
                    try:
                        mtime = float(value[b"mtime"])
                    except ValueError:
                        mtime = 0
        member = tarfile.TarInfo(name.decode("utf-8", self._errors))
        member.type = kind
        member.linkname = link.decode("utf-8", self._errors)
        member.size = size
        member.mode = mode
        member.mtime = mtime
        if any(c == b"x" for c, _v in chain):
            data_size = size  # an extended header's size counts; a global one does not
        if kind in _DATA_TYPES or kind not in _KNOWN_TYPES:
            self._left, self._pad = data_size, _padded(data_size) - data_size
        return member

    def _start_fallback(self, head: bytes) -> None:
        rest = self._buf[self._pos :]
        self._buf, self._view, self._pos = b"", memoryview(b""), 0
        self._rest = _Chained(b"".join(self._raw_globals) + head + rest, self._source)

    def _fall_back(self) -> Iterator[tarfile.TarInfo]:
        rest: Any = self._rest
        with tarfile.open(fileobj=rest, mode="r|", errors=self._errors) as tf:
            for member in tf:
                self._fallback = tf.extractfile(member) if member.isreg() else _EMPTY
                yield member
        self._fallback = _EMPTY


class _Empty:
    def read(self, n: int = -1) -> bytes:
        return b""

    def readinto(self, target: Any) -> int:
        return 0


_EMPTY = _Empty()


class _Chained:
    """``head``, then the rest of ``source``."""

    def __init__(self, head: bytes, source: Any) -> None:
        self._head = head
        self._source = source

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0 or n >= len(self._head):
                out, self._head = self._head, b""
                return out
            out, self._head = self._head[:n], self._head[n:]
            return out
        return bytes(self._source.read(n))


def _parse(hdr: bytes) -> tuple[str | None, int, int, int]:
    """(why the block ends the archive as ``tarfile`` sees it, or None; size, mode, mtime)."""
    if not hdr:
        return "empty file", 0, 0, 0
    if len(hdr) != _BLOCK:
        return "truncated header", 0, 0, 0
    if hdr == _ZERO_BLOCK:
        return "end of archive", 0, 0, 0
    try:
        _check_header(hdr)
        return None, _number(hdr[124:136]), _number(hdr[100:108]), _number(hdr[136:148])
    except tarfile.ReadError:
        return "invalid header", 0, 0, 0

"""TarReader reads members as tarfile does; strip_top_component renames without re-encoding."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from sandbank.providers._tar import TarReader, strip_top_component

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


class Pieces(io.RawIOBase):
    """A stream that returns at most a random piece size per read, like a socket."""

    def __init__(self, data: bytes, sizes: tuple[int, ...], rng: random.Random) -> None:
        self.data, self.pos, self.sizes, self.rng = data, 0, sizes, rng

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        k = self.rng.choice(self.sizes)
        if n >= 0:
            k = min(k, n)
        out = self.data[self.pos : self.pos + k]
        self.pos += len(out)
        return out

    def readinto(self, target: Any) -> int:
        out = self.read(len(target))
        target[: len(out)] = out
        return len(out)


def _archive(fmt: int, top: str = "", pax_global: bool = False) -> bytes:
    rng = random.Random(fmt)
    buf = io.BytesIO()
    extra: dict[str, Any] = {"pax_headers": {"comment": "global"}} if pax_global else {}
    long_ok = fmt != tarfile.USTAR_FORMAT

    with tarfile.open(fileobj=buf, mode="w", format=fmt, **extra) as tf:

        def add(
            name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""
        ) -> None:
            info = tarfile.TarInfo(top + name)
            info.type, info.linkname, info.size = kind, link, len(data)
            info.mtime, info.mode = 1_600_000_000, 0o640
            tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        if top:
            add("", tarfile.DIRTYPE)
        add("dir", tarfile.DIRTYPE)
        add("dir/a.txt", data=b"hello")
        add("dir/empty")
        add("dir/one-block", data=b"x" * 512)
        add("dir/big", data=rng.randbytes(20_000))
        prefixed = "p" * 120 + "/" + "f" * 90  # a ustar prefix field
        add(prefixed, data=b"prefixed")
        add("n" * 99, data=b"just fits after the top")
        long = "/".join(["d" * 60] * 3) + "/" + "f" * 80 if long_ok else prefixed
        add(long, data=b"long")
        add("hard", tarfile.LNKTYPE, link=top + (long if long_ok else "dir/big"))
        add("hard2", tarfile.LNKTYPE, link=top + "dir/a.txt")
        add("sym", tarfile.SYMTYPE, link="../" + "x" * (150 if long_ok else 90))
        add("sym-top", tarfile.SYMTYPE, link="top/dir")  # a target, not a name: kept
        if long_ok:
            add("ünï/cødé.txt", data=b"u")
            add("raw\udcff", data=b"r")
        add("fifo", tarfile.FIFOTYPE)
        add("./dot/x", data=b"dot")
    return buf.getvalue()


def _via_tarfile(data: bytes) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|", errors="surrogateescape") as tf:
            for m in tf:
                body = tf.extractfile(m).read() if m.isreg() else None  # type: ignore[union-attr]
                kind = tarfile.REGTYPE if m.type == tarfile.GNUTYPE_SPARSE else m.type
                out.append((m.name, kind, m.linkname, m.size, m.mode, m.mtime, body))
    except (tarfile.ReadError, ValueError):
        out.append(("error",))
    return out


def _via_reader(data: bytes, seed: int, into: bool) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    out: list[tuple[Any, ...]] = []
    try:
        reader = TarReader(Pieces(data, (1, 511, 512, 513, 4096, 1 << 20), rng))
        for m in reader:
            body = None
            if m.isreg():
                if into:
                    got = bytearray()
                    piece = bytearray(rng.choice([1, 7, 512, 100_000]))
                    while n := reader.readinto(piece):
                        got += piece[:n]
                    body = bytes(got)
                else:
                    body = reader.read()
            kind = tarfile.REGTYPE if m.type == tarfile.GNUTYPE_SPARSE else m.type
            out.append((m.name, kind, m.linkname, m.size, m.mode, m.mtime, body))
    except tarfile.ReadError as exc:
        out.append(("error", str(exc)))
    return out


def _same(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> bool:
    if got == want:
        return True
    # A malformed pax record: tarfile (3.11) skips it, TarReader refuses it.
    return got[-1] == ("error", "invalid pax header") and got[:-1] == want[: len(got) - 1]


@pytest.mark.parametrize("into", [False, True])
@pytest.mark.parametrize("name", [*FORMATS, "pax-global"])
def test_reader_reads_what_tarfile_reads(name: str, into: bool) -> None:
    data = (
        _archive(tarfile.PAX_FORMAT, pax_global=True)
        if name == "pax-global"
        else (_archive(FORMATS[name]))
    )
    want = _via_tarfile(data)
    assert ("error",) not in want and len(want) > 10
    for seed in range(5):
        assert _via_reader(data, seed, into) == want


@pytest.mark.parametrize(
    "data", [b"", bytes(1024), b"not a tar" * 100], ids=["empty", "zeros", "garbage"]
)
def test_reader_on_empty_and_garbage_streams(data: bytes) -> None:
    got = [m[:1] if m[0] == "error" else m for m in _via_reader(data, 0, False)]
    assert got == _via_tarfile(data)


def test_reader_on_damaged_archives() -> None:
    rng = random.Random(7)
    archives = [_archive(f) for f in FORMATS.values()] + [_archive(tarfile.PAX_FORMAT, "", True)]
    for trial in range(600):
        data = bytearray(rng.choice(archives))
        if rng.random() < 0.4:
            del data[rng.randrange(len(data)) :]
        else:
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(min(len(data), 8192))] = rng.randrange(256)
        want = _via_tarfile(bytes(data))
        got = _via_reader(bytes(data), trial, trial % 2 == 1)
        if want[-1] == ("error",):
            assert got[-1][0] == "error" and got[:-1] == want[:-1], trial
        else:
            assert _same(got, want), trial


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_reader_hands_sparse_members_to_tarfile(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-first").write_bytes(b"before the sparse file")
    with open(src / "sparse", "wb") as fh:
        fh.truncate(3 << 20)
        fh.seek(1 << 20)
        fh.write(b"in the middle")
    (src / "z-last").write_bytes(b"after it")
    archive = tmp_path / "a.tar"
    proc = subprocess.run(
        ["tar", "-S", f"--format={fmt}", "-cf", str(archive), "-C", str(src), "."],
        capture_output=True,
    )
    assert proc.returncode == 0, (
        f"GNU tar (essential on Debian) wrote no {fmt} archive: {proc.stderr!r}"
    )
    data = archive.read_bytes()
    want = _via_tarfile(data)
    assert [m[0] for m in want] == [".", "./a-first", "./sparse", "./z-last"]
    assert _via_reader(data, 0, False) == want
    assert _via_reader(data, 1, True) == want


# -- strip_top_component --------------------------------------------------------------------


def _strip(data: bytes, piece: int = 1 << 20) -> bytes:
    out = bytearray()
    strip_top_component(io.BufferedReader(Pieces(data, (piece,), random.Random(0))), out.extend)
    return bytes(out)


@pytest.mark.parametrize("name", [*FORMATS, "pax-global"])
def test_strip_renames_every_member_and_nothing_else(name: str) -> None:
    fmt = tarfile.PAX_FORMAT if name == "pax-global" else FORMATS[name]
    glob = name == "pax-global"
    plain, topped = _archive(fmt, "", glob), _archive(fmt, "top/", glob)
    want = _via_tarfile(plain)
    got = _via_tarfile(_strip(topped))
    assert ("error",) not in got
    assert got == want
    # and what a sandbox exports is what TarReader reads
    assert _via_reader(_strip(topped), 3, True) == want


def test_strip_keeps_symlink_targets_and_drops_mode_type_bits() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link in [("top", tarfile.DIRTYPE, ""), ("top/l", tarfile.SYMTYPE, "top/x")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, link, 0o40755
            tf.addfile(info)
    with tarfile.open(fileobj=io.BytesIO(_strip(buf.getvalue()))) as tf:
        (member,) = tf.getmembers()
    assert (member.name, member.linkname, member.mode) == ("l", "top/x", 0o755)


def test_strip_refuses_damaged_and_truncated_streams() -> None:
    data = bytearray(_archive(tarfile.PAX_FORMAT, "top/"))
    data[600] ^= 0x55  # inside the second header
    with pytest.raises(tarfile.ReadError, match="checksum"):
        _strip(bytes(data))
    whole = _archive(tarfile.PAX_FORMAT, "top/")
    for cut in (100, 512 * 3 + 7, len(whole) // 2):
        with pytest.raises(tarfile.ReadError):
            _strip(whole[:cut])


def test_strip_handles_big_members_in_pieces() -> None:
    body = os.urandom(3 << 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("top/big")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
    out = _strip(buf.getvalue(), piece=65_536)
    with tarfile.open(fileobj=io.BytesIO(out)) as tf:
        assert tf.getnames() == ["big"]
        assert tf.extractfile("big").read() == body  # type: ignore[union-attr]

"""Byte-level encodings of the store: blobs, metadata objects, pack indexes, trees, keys.

See FORMAT.md next to this file for the description; this module is its implementation.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sandbank.snapshots.errors import CorruptObject, WrongKey

FORMAT_NAME = "sandbank-snapshots"
FORMAT_VERSION = 1

SMALL_FILE = 256 * 1024
"""Files up to this size are one chunk; bigger files are cut by FastCDC."""
CDC_MIN = 128 * 1024
CDC_AVG = 256 * 1024
CDC_MAX = 1024 * 1024
"""FastCDC parameters (pyfastcdc's real average is about avg + min, ~384 KiB). Smaller than
1 MiB on purpose: a 1 MiB overwrite then rewrites ~1.5 MiB instead of ~3.5 MiB."""
PACK_TARGET = 32 * 1024 * 1024
"""A pack is closed once it holds this many stored bytes."""
ZSTD_LEVEL = 3

KIND_CHUNK = 0
KIND_TREE = 1
FLAG_ZSTD = 1

ENV_KEY = "SANDBANK_STORE_KEY"
ENV_KEY_FILE = "SANDBANK_STORE_KEY_FILE"

_INDEX_MAGIC = b"SBIX"
_ENTRY = struct.Struct("<32sBBQII")
_META_PLAIN = b"SBP1"
_META_SEALED = b"SBE1"
_PACK_TRAILER = b"SBPT"
_TRAILER = struct.Struct("<I4s")

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    c = getattr(_local, "cctx", None)
    if c is None:
        c = _local.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "dctx", None)
    if d is None:
        d = _local.dctx = zstandard.ZstdDecompressor()
    return d


def compress(data: bytes | memoryview) -> bytes:
    return _compressor().compress(data)


def decompress(data: bytes | memoryview, raw_length: int | None = None) -> bytes:
    if raw_length is not None:
        return _decompressor().decompress(data, max_output_size=raw_length)
    return _decompressor().decompress(data)


def new_pack_id() -> str:
    """Time-ordered, random pack name: 12 hex digits of milliseconds, then 20 random."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def pack_time(pack_id: str) -> float | None:
    """When a pack was created, from its name (None if the name is not ours)."""
    try:
        return int(pack_id[:12], 16) / 1000.0
    except ValueError:
        return None


def new_snapshot_id() -> str:
    return secrets.token_hex(8)


# -- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Keys derived from the store secret: AES-256-GCM data key and keyed-BLAKE3 id key."""

    data: bytes
    ids: bytes
    check: str

    @classmethod
    def derive(cls, secret: bytes, salt: bytes, n: int, r: int, p: int) -> Keys:
        master = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(secret)

        def sub(context: str) -> bytes:
            return blake3.blake3(
                master, derive_key_context=f"sandbank snapshots v1 {context}"
            ).digest()

        check = blake3.blake3(b"key check", key=sub("check")).hexdigest()
        return cls(data=sub("data"), ids=sub("ids"), check=check)


def key_from_environment() -> bytes | None:
    """The store key from SANDBANK_STORE_KEY, or the file named by SANDBANK_STORE_KEY_FILE."""
    value = os.environ.get(ENV_KEY)
    if value:
        return value.encode()
    path = os.environ.get(ENV_KEY_FILE)
    if path:
        try:
            with open(path, "rb") as fh:
                data = fh.read().rstrip(b"\r\n")
        except OSError as exc:
            raise WrongKey(
                f"cannot read the store key file {path!r} named by {ENV_KEY_FILE}: {exc}; "
                f"fix the path or unset the variable"
            ) from None
        if not data:
            raise WrongKey(f"the store key file {path!r} is empty; put the key in it")
        return data
    return None


def new_encryption_config() -> dict[str, Any]:
    return {
        "algorithm": "AES-256-GCM",
        "ids": "keyed-BLAKE3",
        "kdf": {"name": "scrypt", "n": 2**14, "r": 8, "p": 1, "salt": secrets.token_hex(16)},
    }


def keys_for(config: dict[str, Any], secret: bytes) -> Keys:
    kdf = config["kdf"]
    return Keys.derive(secret, bytes.fromhex(kdf["salt"]), kdf["n"], kdf["r"], kdf["p"])


# -- codec --------------------------------------------------------------------------------


class Codec:
    """Turns plaintext into stored bytes and back: ids, compression, encryption."""

    def __init__(self, keys: Keys | None) -> None:
        self.keys = keys
        self._aead = AESGCM(keys.data) if keys else None

    @property
    def encrypted(self) -> bool:
        return self.keys is not None

    def blob_id(self, data: bytes | memoryview) -> bytes:
        if self.keys is not None:
            return blake3.blake3(data, key=self.keys.ids).digest()
        return blake3.blake3(data).digest()

    def encode_blob(
        self, blob_id: bytes, data: bytes | memoryview, try_compress: bool = True
    ) -> tuple[bytes, int]:
        """Stored bytes and flags for one blob."""
        flags = 0
        payload: bytes | memoryview = data
        if try_compress and len(data) > 64:
            packed = compress(data)
            if len(packed) < len(data) - len(data) // 32:
                payload, flags = packed, FLAG_ZSTD
        if self._aead is not None:
            nonce = os.urandom(12)
            return nonce + self._aead.encrypt(nonce, bytes(payload), blob_id), flags
        return bytes(payload), flags

    def decode_blob(
        self, blob_id: bytes, stored: bytes | memoryview, flags: int, raw_length: int, where: str
    ) -> bytes:
        """Plaintext of a stored blob, checked against its id; CorruptObject otherwise."""
        payload: bytes | memoryview = stored
        if self._aead is not None:
            try:
                payload = self._aead.decrypt(bytes(stored[:12]), bytes(stored[12:]), blob_id)
            except InvalidTag:
                raise CorruptObject(where, f"blob {blob_id.hex()} fails authentication") from None
        if flags & FLAG_ZSTD:
            try:
                data = decompress(payload, raw_length)
            except zstandard.ZstdError as exc:
                raise CorruptObject(
                    where, f"blob {blob_id.hex()} does not decompress ({exc})"
                ) from None
        else:
            data = bytes(payload)
        if len(data) != raw_length or self.blob_id(data) != blob_id:
            raise CorruptObject(where, f"blob {blob_id.hex()} does not match its hash")
        return data

    def seal_meta(self, payload: bytes, name: str) -> bytes:
        """A metadata object (index, encrypted record): zstd, then checksum or AEAD."""
        body = compress(payload)
        if self._aead is not None:
            nonce = os.urandom(12)
            return _META_SEALED + nonce + self._aead.encrypt(nonce, body, name.encode())
        return _META_PLAIN + blake3.blake3(body).digest() + body

    def open_meta(self, data: bytes, name: str) -> bytes:
        magic = data[:4]
        if magic == _META_PLAIN:
            digest, body = data[4:36], data[36:]
            if blake3.blake3(body).digest() != digest:
                raise CorruptObject(name, "checksum mismatch (truncated or altered)")
        elif magic == _META_SEALED:
            if self._aead is None:
                raise CorruptObject(name, "is encrypted but the store is not")
            try:
                body = self._aead.decrypt(data[4:16], data[16:], name.encode())
            except InvalidTag:
                raise CorruptObject(
                    name, "fails authentication (altered, or not this store's)"
                ) from None
        else:
            raise CorruptObject(name, "unknown object header")
        if magic == _META_PLAIN and self._aead is not None:
            raise CorruptObject(name, "is not encrypted but the store is")
        try:
            return decompress(body)
        except zstandard.ZstdError as exc:
            raise CorruptObject(name, f"does not decompress ({exc})") from None


# -- pack index -----------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class BlobLoc:
    pack: str
    offset: int
    length: int
    raw_length: int
    kind: int
    flags: int


def encode_index(entries: list[tuple[bytes, int, int, int, int, int]]) -> bytes:
    """entries: (blob id, kind, flags, offset, length, raw length)."""
    out = bytearray(_INDEX_MAGIC)
    out += struct.pack("<BI", 1, len(entries))
    for blob_id, kind, flags, offset, length, raw in entries:
        out += _ENTRY.pack(blob_id, kind, flags, offset, length, raw)
    return bytes(out)


def decode_index(data: bytes, pack: str, name: str) -> list[tuple[bytes, BlobLoc]]:
    if data[:4] != _INDEX_MAGIC or len(data) < 9:
        raise CorruptObject(name, "not a pack index")
    version, count = struct.unpack_from("<BI", data, 4)
    if version != 1 or len(data) != 9 + count * _ENTRY.size:
        raise CorruptObject(name, "bad index version or length")
    return [
        (blob_id, BlobLoc(pack, offset, length, raw, kind, flags))
        for blob_id, kind, flags, offset, length, raw in _ENTRY.iter_unpack(memoryview(data)[9:])
    ]


def pack_trailer(index_object: bytes) -> bytes:
    """What a pack ends with: its index object, the object's length, and a magic."""
    return index_object + _TRAILER.pack(len(index_object), _PACK_TRAILER)


TRAILER_SIZE = _TRAILER.size
"""Bytes after a pack's embedded index object: its length and the magic."""


def trailer_length(tail: bytes | memoryview) -> int | None:
    """The length of the index object before the last ``TRAILER_SIZE`` bytes of a pack, or None
    when the pack has no trailer (written before packs carried one, or cut short)."""
    if len(tail) != _TRAILER.size:
        return None
    length, magic = _TRAILER.unpack(tail)
    return int(length) if magic == _PACK_TRAILER else None


def split_pack(data: bytes | memoryview) -> tuple[int, bytes] | None:
    """(where a pack's blobs end, its embedded index object), or None when it has no trailer.

    Only the frame is checked here; the index object is checked by ``Codec.open_meta``.
    """
    length = trailer_length(data[len(data) - _TRAILER.size :])
    end = len(data) - _TRAILER.size - (length or 0)
    if length is None or end < 0:
        return None
    return end, bytes(data[end : len(data) - _TRAILER.size])


# -- trees ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """One entry of a directory: a file, a directory or a symlink."""

    name: bytes
    type: str
    mode: int
    mtime_ns: int
    size: int = 0
    chunks: list[bytes] | None = None
    target: bytes | None = None
    tree: bytes | None = None


def _put_bytes(out: dict[str, Any], key: str, value: bytes) -> None:
    try:
        out[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_b64"] = base64.b64encode(value).decode()


def _get_bytes(data: dict[str, Any], key: str) -> bytes | None:
    if key in data:
        return str(data[key]).encode("utf-8")
    if key + "_b64" in data:
        return base64.b64decode(data[key + "_b64"])
    return None


def encode_tree(nodes: list[Node]) -> bytes:
    """Deterministic JSON of a directory's entries, sorted by name bytes."""
    entries = []
    for n in sorted(nodes, key=lambda n: n.name):
        e: dict[str, Any] = {"type": n.type, "mode": n.mode, "mtime_ns": n.mtime_ns}
        _put_bytes(e, "name", n.name)
        if n.type == "file":
            e["size"] = n.size
            e["chunks"] = [c.hex() for c in n.chunks or ()]
        elif n.type == "symlink":
            _put_bytes(e, "target", n.target or b"")
        elif n.type == "dir":
            e["tree"] = (n.tree or b"").hex()
        entries.append(e)
    return json.dumps({"v": 1, "entries": entries}, sort_keys=True, separators=(",", ":")).encode()


def decode_tree(data: bytes, where: str) -> list[Node]:
    try:
        doc = json.loads(data)
        nodes = []
        for e in doc["entries"]:
            name = _get_bytes(e, "name")
            kind = e["type"]
            if not name or b"/" in name or name in (b".", b"..") or b"\x00" in name:
                raise ValueError(f"unsafe entry name {name!r}")
            if kind not in ("file", "dir", "symlink"):
                raise ValueError(f"unknown entry type {kind!r}")
            node = Node(
                name=name, type=kind, mode=int(e["mode"]) & 0o7777, mtime_ns=int(e["mtime_ns"])
            )
            if kind == "file":
                node.size = int(e["size"])
                node.chunks = [bytes.fromhex(c) for c in e["chunks"]]
            elif kind == "symlink":
                node.target = _get_bytes(e, "target") or b""
            else:
                node.tree = bytes.fromhex(e["tree"])
            nodes.append(node)
        return nodes
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptObject(where, f"is not a valid directory object ({exc})") from None

"""SnapshotStore: the async API over a content-addressed snapshot store at an fsspec URL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import platformdirs

from sandbank.snapshots import _format as fmt
from sandbank.snapshots._backend import Backend
from sandbank.snapshots._format import Codec
from sandbank.snapshots._maintenance import _Maintenance
from sandbank.snapshots._reading import _Reading
from sandbank.snapshots._records import (
    GcReport,
    ProgressCallback,
    RestoreStats,
    SnapshotDetails,
    SnapshotDiff,
    SnapshotFile,
    SnapshotRecord,
    SnapshotStats,
    VerifyProblem,
    VerifyReport,
    _abspath,
)
from sandbank.snapshots._repo import Repo
from sandbank.snapshots._writing import _Writing
from sandbank.snapshots.errors import MissingObject, StoreFormatError, StoreNotFound, WrongKey

__all__ = [
    "GcReport",
    "ProgressCallback",
    "RestoreStats",
    "SnapshotDetails",
    "SnapshotDiff",
    "SnapshotFile",
    "SnapshotRecord",
    "SnapshotStats",
    "SnapshotStore",
    "VerifyProblem",
    "VerifyReport",
]

log = logging.getLogger("sandbank.snapshots")


def _default_cache(url: str, store_id: str) -> Path:
    key = fmt.blake3.blake3(f"{url}\n{store_id}".encode()).hexdigest()[:24]
    return Path(platformdirs.user_cache_dir("sandbank")) / "snapshot-stores" / key


class SnapshotStore(_Writing, _Reading, _Maintenance):
    """Content-addressed, incremental workspace snapshots at an fsspec URL. See FORMAT.md.

    Writing (``snapshot``), reading (``restore``, ``listing``, ``show``, ``diff``) and
    maintenance (``verify``, ``gc``) live in ``_writing``, ``_reading`` and ``_maintenance``.
    """

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        url: str | os.PathLike[str],
        *,
        storage_options: dict[str, Any] | None = None,
        encryption_key: bytes | str | None = None,
        create: bool = True,
        cache_dir: str | os.PathLike[str] | Literal[False] | None = None,
    ) -> SnapshotStore:
        """Open (or create) the store at ``url``: file://, memory://, s3://, gs://, az://, a path.

        ``encryption_key`` (or env SANDBANK_STORE_KEY / SANDBANK_STORE_KEY_FILE) encrypts a new
        store and opens an encrypted one. ``cache_dir`` holds host-side index and tree caches
        (default: the user cache dir; False disables them).
        """
        text = os.fspath(url)
        if "://" not in text and "::" not in text:
            text = _abspath(text)
        return await asyncio.to_thread(
            cls._open_sync, text, storage_options, encryption_key, create, cache_dir
        )

    @classmethod
    def _open_sync(
        cls,
        url: str,
        storage_options: dict[str, Any] | None,
        encryption_key: bytes | str | None,
        create: bool,
        cache_dir: str | os.PathLike[str] | Literal[False] | None,
    ) -> SnapshotStore:
        backend = Backend(url, storage_options)
        explicit = encryption_key.encode() if isinstance(encryption_key, str) else encryption_key
        secret = explicit if explicit is not None else fmt.key_from_environment()
        try:
            raw = backend.get("config.json")
        except MissingObject:
            raw = None
        if raw is None:
            backend.check_bucket()
            exists = backend.root_exists()
            if not create:
                raise StoreNotFound(
                    url, "missing config.json" if exists else "the location does not exist"
                )
            if exists and backend.root_entries():
                raise StoreFormatError(
                    f"{url!r} is not empty and holds no snapshot store (no config.json); "
                    f"create the store in an empty location"
                )
            config: dict[str, Any] = {
                "format": fmt.FORMAT_NAME,
                "version": fmt.FORMAT_VERSION,
                "id": uuid.uuid4().hex,
                "created_at": time.time(),
                "hash": "blake3",
                "chunking": {
                    "algorithm": "fastcdc-2020",
                    "small_file": fmt.SMALL_FILE,
                    "min": fmt.CDC_MIN,
                    "avg": fmt.CDC_AVG,
                    "max": fmt.CDC_MAX,
                },
                "compression": {"algorithm": "zstd", "level": fmt.ZSTD_LEVEL},
                "pack_target": fmt.PACK_TARGET,
                "encryption": None,
            }
            if secret is not None:
                new_enc = fmt.new_encryption_config()
                new_enc["key_check"] = fmt.keys_for(new_enc, secret).check
                config["encryption"] = new_enc
            backend.makedirs()
            backend.put("config.json", json.dumps(config, indent=1, sort_keys=True).encode())
            raw = backend.get("config.json")  # a concurrent creator may have won: use theirs
            log.info("created snapshot store %s", url)
        try:
            loaded = json.loads(raw)
            if not isinstance(loaded, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise StoreFormatError(
                f"{url}/config.json is not valid JSON ({exc}); this is not a snapshot store"
            ) from None
        config = loaded
        if config.get("format") != fmt.FORMAT_NAME:
            raise StoreFormatError(f"{url!r} is not a sandbank snapshot store (config.json format)")
        if config.get("version") != fmt.FORMAT_VERSION:
            raise StoreFormatError(
                f"store {url!r} uses format version {config.get('version')!r}; this sandbank reads "
                f"version {fmt.FORMAT_VERSION}: upgrade sandbank to open it"
            )
        keys = None
        enc: dict[str, Any] | None = config.get("encryption")
        if enc:
            if secret is None:
                raise WrongKey(
                    f"store {url!r} is encrypted; pass encryption_key=..., or set "
                    f"{fmt.ENV_KEY} or {fmt.ENV_KEY_FILE}"
                )
            keys = fmt.keys_for(enc, secret)
            if keys.check != enc.get("key_check"):
                raise WrongKey(
                    f"the encryption key does not open store {url!r}; "
                    f"use the key it was created with"
                )
        elif explicit is not None:
            raise WrongKey(
                f"store {url!r} is not encrypted but an encryption_key was given; drop the key "
                f"(encryption is chosen when a store is created)"
            )
        if cache_dir is False:
            cache = None
        elif cache_dir is None:
            cache = _default_cache(url, str(config.get("id", "")))
        else:
            cache = Path(cache_dir) / _default_cache(url, str(config.get("id", ""))).name
        return cls(Repo(backend, Codec(keys), config, cache), url)

    @property
    def encrypted(self) -> bool:
        return self._repo.codec.encrypted

    async def aclose(self) -> None:
        self._repo.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

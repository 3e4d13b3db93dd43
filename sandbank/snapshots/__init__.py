"""Content-addressed, incremental workspace snapshots on any fsspec URL.

    store = await SnapshotStore.open("s3://bucket/snaps", storage_options={...})
    rec = await store.snapshot(sandbox)                      # full
    rec2 = await store.snapshot(sandbox, parent=rec.id)      # reads only what changed
    await store.restore(rec2.id, other_sandbox)              # any provider, or a host dir

Files are cut into content-defined chunks (FastCDC; files up to 256 KiB are one chunk),
named by their BLAKE3 hash (keyed when the store is encrypted), zstd-compressed,
optionally sealed with AES-256-GCM, and grouped into pack objects of about 32 MiB with an
index each. Directories form a Merkle tree of JSON objects stored in the same packs. A
snapshot is committed by writing its record ``snapshots/<id>.json`` last. The store format
(version 1) is described in FORMAT.md next to this file.
"""

from sandbank.errors import SnapshotError
from sandbank.snapshots._ingest import Excluder
from sandbank.snapshots.errors import (
    CorruptObject,
    MissingObject,
    SnapshotNotFound,
    SourceChanged,
    StoreFormatError,
    StoreNotFound,
    StoreUnavailable,
    TargetNotEmpty,
    WrongKey,
)
from sandbank.snapshots.store import (
    GcReport,
    ProgressCallback,
    RestoreStats,
    SnapshotDetails,
    SnapshotDiff,
    SnapshotFile,
    SnapshotRecord,
    SnapshotStats,
    SnapshotStore,
    VerifyProblem,
    VerifyReport,
)

__all__ = [
    "CorruptObject",
    "Excluder",
    "GcReport",
    "MissingObject",
    "ProgressCallback",
    "RestoreStats",
    "SnapshotDetails",
    "SnapshotDiff",
    "SnapshotError",
    "SnapshotFile",
    "SnapshotNotFound",
    "SnapshotRecord",
    "SnapshotStats",
    "SnapshotStore",
    "SourceChanged",
    "StoreFormatError",
    "StoreNotFound",
    "StoreUnavailable",
    "TargetNotEmpty",
    "VerifyProblem",
    "VerifyReport",
    "WrongKey",
]
